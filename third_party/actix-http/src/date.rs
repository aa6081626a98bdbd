use std::{
    cell::Cell,
    fmt::{self, Write},
    time::{Duration, Instant, SystemTime},
};

/// "Thu, 01 Jan 1970 00:00:00 GMT".len()
pub(crate) const DATE_VALUE_LENGTH: usize = 29;

#[derive(Clone, Copy)]
pub(crate) struct Date {
    pub(crate) bytes: [u8; DATE_VALUE_LENGTH],
    pos: usize,
}

impl Date {
    fn new() -> Date {
        let mut date = Date {
            bytes: [0; DATE_VALUE_LENGTH],
            pos: 0,
        };
        date.update();
        date
    }

    fn update(&mut self) {
        self.pos = 0;
        write!(self, "{}", httpdate::HttpDate::from(SystemTime::now())).unwrap();
    }
}

impl fmt::Write for Date {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let len = s.len();
        self.bytes[self.pos..self.pos + len].copy_from_slice(s.as_bytes());
        self.pos += len;
        Ok(())
    }
}

/// The `Date` header's value, formatted at most every 500 millis.
///
/// ochopod's patch (see third_party/README.md): upstream refreshes the value from a task that an
/// `interval` wakes every 500 millis on every worker, busy or idle, which was the largest share
/// of an idle ochopod pod's wake-ups. Here the value is refreshed when it is read and older than
/// 500 millis, so an idle server never wakes, and `now` reads the clock (a vDSO call).
pub(crate) struct DateService {
    current: Cell<(Date, Instant)>,
}

impl DateService {
    pub(crate) fn new() -> Self {
        DateService {
            current: Cell::new((Date::new(), Instant::now())),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::now()
    }

    pub(crate) fn with_date<F: FnMut(&Date)>(&self, mut f: F) {
        let (mut date, at) = self.current.get();
        let now = Instant::now();
        if now.duration_since(at) >= Duration::from_millis(500) {
            date = Date::new();
            self.current.set((date, now));
        }
        f(&date);
    }
}

impl fmt::Debug for DateService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DateService").finish_non_exhaustive()
    }
}
