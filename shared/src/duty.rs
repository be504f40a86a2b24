//! Operators' hours: when a person is at work to answer a conversation handed over.
//!
//! Invariant: one definition of the hours (Moscow time, UTC+3 all year, 9:00 to 21:00 every
//! day) decides both the wait the user is promised and anything else that depends on duty.

use chrono::Timelike;

/// Operators' hours, Moscow time (UTC+3 all year): from 9:00 to 21:00 every day.
const DUTY_HOURS: std::ops::Range<u32> = 9..21;
const DUTY_UTC_OFFSET_SECS: i32 = 3 * 3600;

/// Whether operators are at work at `now`, which decides the wait the user is promised.
pub fn on_duty(now: chrono::DateTime<chrono::Utc>) -> bool {
    let offset = chrono::FixedOffset::east_opt(DUTY_UTC_OFFSET_SECS).expect("a valid offset");
    DUTY_HOURS.contains(&now.with_timezone(&offset).hour())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    #[test]
    fn operators_work_from_nine_to_nine_moscow_time() {
        // 06:00 UTC is 09:00 in Moscow; 18:00 UTC is 21:00.
        assert!(super::on_duty(Utc.with_ymd_and_hms(2026, 11, 25, 6, 0, 0).unwrap()));
        assert!(super::on_duty(Utc.with_ymd_and_hms(2026, 11, 25, 17, 59, 0).unwrap()));
        assert!(!super::on_duty(Utc.with_ymd_and_hms(2026, 11, 25, 18, 0, 0).unwrap()));
        assert!(!super::on_duty(Utc.with_ymd_and_hms(2026, 11, 25, 2, 30, 0).unwrap()));
    }
}
