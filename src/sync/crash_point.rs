//! Named crash points, for `tests/crash_points.rs`: where a sync, a status-directory write
//! or a cluster status patch can be made to die, to prove the next run loses nothing.

/// A named point where a crash test kills the process. With the `failpoints` feature,
/// `FAILPOINTS=NAME=panic` unwinds from here and `FAILPOINTS=NAME=return` exits the
/// process at once (code 70, no destructor runs, as under a kill); without the feature it
/// is nothing at all.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        if fail::eval($name, |_| ()).is_some() {
            std::process::exit(70);
        }
    };
}
