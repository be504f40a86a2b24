//! A private PostgreSQL cluster started from the installed server binaries, for the
//! all-in-one binary when no `DATABASE_URL` is given, and for the tests.
//!
//! The cluster listens on 127.0.0.1 only, on a free port, with a generated password. The
//! server runs as a child process in its own process group (so a Ctrl-C in the terminal
//! reaches Concierge, which then stops the server after its own work has drained) and with a
//! parent-death signal, so that it never outlives the process that started it.
//! PostgreSQL refuses to run as root; when we are root, the server runs as the `postgres`
//! system user, which must own the cluster's files and be able to reach them. When it cannot
//! reach the data directory (a checkout under `/root`, a folder of mode 0700), the cluster's
//! files go to a folder made for it instead, `/var/tmp/concierge-<hash of the data directory>`,
//! so the same data directory always finds the same cluster.

use std::{
    ffi::CString,
    fs,
    io::Write,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use rand::Rng;

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where the cluster's files live; created and initialised when missing.
    pub data_dir: PathBuf,
    /// A throwaway cluster (tests): durability settings off for speed.
    pub ephemeral: bool,
    /// Load `pg_stat_statements`, so that the benchmark can count the statements of its work.
    pub statements: bool,
}

/// A running cluster. Dropping it without `stop` still ends the server: the parent-death signal
/// fires when this process exits.
#[derive(Debug)]
pub struct Cluster {
    pid: i32,
    port: u16,
    password: String,
    /// The folder of the cluster's files: the data directory, or the one made for the
    /// `postgres` user when it cannot reach the data directory.
    home: PathBuf,
    /// Signalled by the supervisor thread when the server process has exited.
    exited: Mutex<mpsc::Receiver<()>>,
}

const SUPERUSER: &str = "concierge";

impl Cluster {
    /// Initialise (if needed) and start the cluster, and wait until it accepts connections.
    /// Blocking: call it from `spawn_blocking` in async code.
    pub fn start(options: &ClusterOptions) -> anyhow::Result<Self> {
        let bin = find_binaries()?;
        let run_as = RunAs::detect()?;
        let data_dir = absolute(&options.data_dir)?;
        fs::create_dir_all(&data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        // Where the cluster (`pg/`), its password and its log live.
        let home = match &run_as {
            Some(user) => user.cluster_home(&data_dir)?,
            None => data_dir.clone(),
        };

        let cluster_dir = home.join("pg");
        let password_file = home.join("pg-password");
        if !cluster_dir.join("PG_VERSION").exists() {
            init_cluster(&bin, run_as.as_ref(), &cluster_dir, &password_file)?;
        }
        let password = fs::read_to_string(&password_file)
            .with_context(|| format!("cannot read {}", password_file.display()))?
            .trim()
            .to_owned();

        // A port can be taken between our probe and the server's bind; retry on that.
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            match spawn_server(&bin, run_as.as_ref(), &cluster_dir, &home, port, options) {
                Ok((pid, exited)) => {
                    let exited = Mutex::new(exited);
                    let cluster = Cluster { pid, port, password: password.clone(), home: home.clone(), exited };
                    match cluster.wait_until_listening(Duration::from_secs(60)) {
                        Ok(()) => return Ok(cluster),
                        Err(error) => last_error = Some(error),
                    }
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("PostgreSQL did not start")))
    }

    /// `postgres://concierge:…@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.home.join("postgres.log")
    }

    /// Fast shutdown (SIGINT): active sessions are ended, the cluster is left consistent.
    /// Blocking.
    pub fn stop(self) -> anyhow::Result<()> {
        // SAFETY: kill(2) with a pid we spawned; no memory is touched.
        unsafe { libc::kill(self.pid, libc::SIGINT) };
        match self.exited.into_inner().expect("exit lock").recv_timeout(Duration::from_secs(30)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGQUIT) };
                bail!("PostgreSQL did not stop within 30 s; sent SIGQUIT")
            }
        }
    }

    fn wait_until_listening(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exited.lock().expect("exit lock").try_recv().is_ok() {
                bail!("PostgreSQL exited during start-up; see {}", self.log_path().display());
            }
            if log_says_ready(&self.log_path()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("PostgreSQL did not become ready in {timeout:?}; see {}", self.log_path().display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn log_says_ready(log: &Path) -> bool {
    fs::read_to_string(log).is_ok_and(|text| text.contains("database system is ready to accept connections"))
}

/// The path of a PostgreSQL client or server tool (`pgbench`, `psql`...), searched like the
/// server binaries.
pub fn find_tool(name: &str) -> anyhow::Result<PathBuf> {
    let bin = find_binaries()?;
    let beside = bin.postgres.with_file_name(name);
    if beside.is_file() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .ok_or_else(|| anyhow!("{name} was not found beside {} or on PATH", bin.postgres.display()))
}

/// Where `initdb` and `postgres` are.
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

fn find_binaries() -> anyhow::Result<Binaries> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    // A PATH entry that has initdb: use the directory of its real file, where postgres lives too.
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                if let Ok(real) = fs::canonicalize(&initdb) {
                    dirs.push(real.parent().unwrap_or(&dir).to_path_buf());
                }
                dirs.push(dir);
            }
        }
    }
    // Debian's layout: /usr/lib/postgresql/<major>/bin, newest first.
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        dirs.extend(versions.into_iter().map(|(_, dir)| dir));
    }
    for dir in dirs {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        if initdb.is_file() && postgres.is_file() {
            return Ok(Binaries { initdb, postgres });
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; \
         Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql@15`), or set \
         DATABASE_URL to an existing PostgreSQL 14+ database"
    )
}

/// The unprivileged user the server runs as when we are root.
struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    fn detect() -> anyhow::Result<Option<Self>> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(None);
        }
        let name = CString::new("postgres").expect("no NUL");
        // SAFETY: getpwnam returns a pointer to static storage or null; we copy the ids out
        // before any other call could overwrite it.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            bail!(
                "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` \
                 system user to run it as. Create one (`useradd --system postgres`), run Concierge \
                 as a normal user, or set DATABASE_URL"
            );
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Some(Self { uid, gid }))
    }

    /// Where the cluster's files go for `data_dir`: `data_dir` itself when this user can enter
    /// it and every folder above it, else a folder made and owned for this user (logged).
    fn cluster_home(&self, data_dir: &Path) -> anyhow::Result<PathBuf> {
        let Some(blocked) = self.first_unreachable(data_dir)? else { return Ok(data_dir.to_path_buf()) };
        let home = relocated_home(data_dir)?;
        match fs::symlink_metadata(&home) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&home).with_context(|| format!("cannot create {}", home.display()))?;
            }
            Err(error) => return Err(error).with_context(|| format!("cannot stat {}", home.display())),
            Ok(meta) => {
                use std::os::unix::fs::MetadataExt;
                // Someone else's folder (or a link) in a world-writable place is not ours to use.
                if !meta.is_dir() || (meta.uid() != self.uid && meta.uid() != 0) {
                    bail!(
                        "{} exists but is not a folder made by Concierge for the `postgres` user; remove it, \
                         or set CONCIERGE_DATA_DIR to a folder that user can reach, or set DATABASE_URL",
                        home.display()
                    );
                }
            }
        }
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
        self.chown(&home)?;
        tracing::warn!(
            data_dir = %data_dir.display(),
            cluster = %home.display(),
            "the `postgres` user, which runs PostgreSQL for root, cannot enter {} (mode {:o}): the private \
             cluster's files live in {} instead",
            blocked.0.display(),
            blocked.1,
            home.display()
        );
        Ok(home)
    }

    /// The first of `dir` and its parents this user may not enter, with its mode.
    fn first_unreachable(&self, dir: &Path) -> anyhow::Result<Option<(PathBuf, u32)>> {
        use std::os::unix::fs::MetadataExt;
        for folder in dir.ancestors() {
            let meta = fs::metadata(folder).with_context(|| format!("cannot stat {}", folder.display()))?;
            let mode = meta.mode();
            let search = if meta.uid() == self.uid {
                mode & 0o100
            } else if meta.gid() == self.gid {
                mode & 0o010
            } else {
                mode & 0o001
            };
            if search == 0 {
                return Ok(Some((folder.to_path_buf(), mode & 0o777)));
            }
        }
        Ok(None)
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("cannot hand {} to the postgres user", path.display()))
    }

    /// Run `command` as this user (std also drops root's supplementary groups).
    fn apply(&self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid);
    }
}

fn init_cluster(
    bin: &Binaries,
    run_as: Option<&RunAs>,
    cluster_dir: &Path,
    password_file: &Path,
) -> anyhow::Result<()> {
    let password: String = rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect();
    fs::create_dir_all(cluster_dir)?;
    fs::set_permissions(cluster_dir, fs::Permissions::from_mode(0o700))?;
    // initdb reads the password from a file; it must be readable by the server user.
    let pwfile = cluster_dir.with_file_name("pg-initdb-password");
    {
        let mut file = fs::File::create(&pwfile)?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        file.write_all(password.as_bytes())?;
    }
    if let Some(user) = run_as {
        user.chown(cluster_dir)?;
        user.chown(&pwfile)?;
    }
    let mut command = Command::new(&bin.initdb);
    command
        .arg("-D")
        .arg(cluster_dir)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--auth=scram-sha-256", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        user.apply(&mut command);
    }
    let output = command.output().context("cannot run initdb")?;
    let _ = fs::remove_file(&pwfile);
    if !output.status.success() {
        let _ = fs::remove_dir_all(cluster_dir);
        bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    fs::write(password_file, &password)?;
    fs::set_permissions(password_file, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Start `postgres` from a dedicated thread that lives as long as the server: the
/// parent-death signal is tied to the thread that forked the child.
fn spawn_server(
    bin: &Binaries,
    run_as: Option<&RunAs>,
    cluster_dir: &Path,
    data_dir: &Path,
    port: u16,
    options: &ClusterOptions,
) -> anyhow::Result<(i32, mpsc::Receiver<()>)> {
    let log_path = data_dir.join("postgres.log");
    let log = fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    if let Some(user) = run_as {
        user.chown(&log_path)?;
    }
    let mut command = Command::new(&bin.postgres);
    command
        .arg("-D")
        .arg(cluster_dir)
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=400"])
        .args(["-c", "shared_buffers=128MB", "-c", "logging_collector=off"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if options.statements {
        command.args(["-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=all"]);
    }
    if options.ephemeral {
        command.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
    }
    if let Some(user) = run_as {
        user.apply(&mut command);
    }
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe; it runs in the child after the uid change, so the
    // setting survives exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let (started_tx, started_rx) = mpsc::channel();
    let (exited_tx, exited_rx) = mpsc::channel();
    std::thread::Builder::new().name("postgres-supervisor".into()).spawn(move || match command.spawn() {
        Ok(mut child) => {
            let _ = started_tx.send(Ok(child.id() as i32));
            let _ = child.wait();
            let _ = exited_tx.send(());
        }
        Err(error) => {
            let _ = started_tx.send(Err(error));
        }
    })?;
    let pid = started_rx
        .recv()
        .map_err(|_| anyhow!("the PostgreSQL supervisor thread died"))?
        .context("cannot start postgres")?;
    Ok((pid, exited_rx))
}

/// `/var/tmp/concierge-<hash>`: one folder per data directory (its canonical path), kept
/// across reboots like the data directory itself.
fn relocated_home(data_dir: &Path) -> anyhow::Result<PathBuf> {
    use sha2::Digest;
    let canonical = fs::canonicalize(data_dir).with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Ok(PathBuf::from(format!("/var/tmp/concierge-{hash}")))
}

/// Remove a cluster's files: `data_dir`, and the folder made for the `postgres` user if the
/// cluster lived there. For throwaway clusters (tests) whose server is gone.
pub fn remove_cluster_files(data_dir: &Path) -> std::io::Result<()> {
    if let Ok(home) = relocated_home(data_dir)
        && home.exists()
    {
        fs::remove_dir_all(home)?;
    }
    fs::remove_dir_all(data_dir)
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root (CI, containers), a data directory the `postgres` user cannot enter, whether
    /// a parent or the folder itself is 0700, still gets a running cluster.
    #[test]
    fn a_cluster_starts_under_a_folder_the_server_user_cannot_enter() {
        match RunAs::detect() {
            Ok(Some(_)) => {}
            _ => {
                eprintln!("skipped: only meaningful as root with a `postgres` user");
                return;
            }
        }
        let root = std::env::temp_dir().join(format!("concierge-pg-unit-{}", std::process::id()));
        let closed_parent = root.join("private");
        let closed_data = root.join("open").join("data");
        fs::create_dir_all(closed_parent.join("data")).unwrap();
        fs::create_dir_all(&closed_data).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(root.join("open"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&closed_parent, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&closed_data, fs::Permissions::from_mode(0o700)).unwrap();

        for data_dir in [closed_parent.join("data"), closed_data] {
            let cluster =
                Cluster::start(&ClusterOptions { data_dir: data_dir.clone(), ephemeral: true, statements: false })
                    .unwrap_or_else(|error| panic!("{}: {error:#}", data_dir.display()));
            let home = relocated_home(&data_dir).unwrap();
            assert!(cluster.log_path().starts_with(&home), "{}", cluster.log_path().display());
            assert!(home.starts_with("/var/tmp"), "{}", home.display());
            std::net::TcpStream::connect(("127.0.0.1", cluster.port())).expect("the server listens");
            cluster.stop().unwrap();
            remove_cluster_files(&data_dir).unwrap();
            assert!(!home.exists());
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
