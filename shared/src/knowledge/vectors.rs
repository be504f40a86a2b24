//! The in-memory vector index over knowledge chunks: exact cosine search.

/// Vectors of the chunks of one KnowledgeIndex, by chunk ordinal.
pub struct VectorIndex {
    model: String,
    dims: usize,
    /// Normalised vectors, `dims` apart.
    data: Vec<f32>,
    /// The chunk ordinal of each stored vector.
    ords: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("vectors of {got} dimensions, expected {expected}")]
    Dimensions { expected: usize, got: usize },
    #[error("a zero vector")]
    Zero,
}

impl VectorIndex {
    pub fn build(model: String, dims: usize, vectors: Vec<Option<Vec<f32>>>) -> Result<Self, VectorError> {
        let mut data = Vec::new();
        let mut ords = Vec::new();
        for (ord, vector) in vectors.into_iter().enumerate() {
            let Some(mut vector) = vector else { continue };
            if vector.len() != dims {
                return Err(VectorError::Dimensions { expected: dims, got: vector.len() });
            }
            normalise(&mut vector)?;
            data.extend_from_slice(&vector);
            ords.push(ord);
        }
        Ok(Self { model, dims, data, ords })
    }

    pub fn model(&self) -> &str {
        &self.model
    }
    pub fn dims(&self) -> usize {
        self.dims
    }
    pub fn len(&self) -> usize {
        self.ords.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ords.is_empty()
    }
    pub fn memory_bytes(&self) -> usize {
        self.data.len() * 4 + self.ords.len() * 8
    }

    pub fn search(&self, query: &[f32], limit: usize) -> Result<Vec<(usize, f32)>, VectorError> {
        if query.len() != self.dims {
            return Err(VectorError::Dimensions { expected: self.dims, got: query.len() });
        }
        let mut query = query.to_vec();
        normalise(&mut query)?;
        let mut scored: Vec<(usize, f32)> = self
            .data
            .chunks_exact(self.dims)
            .zip(&self.ords)
            .map(|(v, ord)| (*ord, v.iter().zip(&query).map(|(a, b)| a * b).sum()))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(limit);
        Ok(scored)
    }
}

fn normalise(vector: &mut [f32]) -> Result<(), VectorError> {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    vector.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}
