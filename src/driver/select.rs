//! Choosing a backend at run time: forced by the caller, by this thread's default, or by
//! `OVERLAPPED_BACKEND`; otherwise probed once per process (io_uring if a ring can be set up
//! with everything the library needs, else epoll). Probing never guesses from the kernel
//! version.

use std::cell::Cell;
use std::sync::OnceLock;

use super::{Backend, Driver};
use crate::error::{Error, ErrorKind};

/// The environment variable that forces a backend: `io_uring` or `epoll`.
pub(crate) const ENV: &str = "OVERLAPPED_BACKEND";

thread_local! {
    static THREAD_DEFAULT: Cell<Option<Backend>> = const { Cell::new(None) };
}

/// This process's default: the environment's choice, or the probe's.
static PROCESS_DEFAULT: OnceLock<Result<Backend, Error>> = OnceLock::new();

/// Whether each backend can run here, probed once.
static AVAILABLE: [OnceLock<Result<(), Error>>; Backend::ALL.len()] = [const { OnceLock::new() }; 2];

pub(crate) fn probe(backend: Backend) -> Result<(), Error> {
    let i = Backend::ALL.iter().position(|b| *b == backend).unwrap_or(0);
    *AVAILABLE[i].get_or_init(|| Driver::create(backend).map(drop).map_err(Error::from))
}

/// This thread's default backend, if [`with_default_backend`] set one.
pub(crate) fn thread_default() -> Option<Backend> {
    THREAD_DEFAULT.with(Cell::get)
}

/// The backend for a port or socket that does not force one.
pub(crate) fn default_backend() -> Result<Backend, Error> {
    match thread_default() {
        Some(b) => Ok(b),
        None => process_default_backend(),
    }
}

/// The process's default backend, whatever this thread's default.
pub(crate) fn process_default_backend() -> Result<Backend, Error> {
    *PROCESS_DEFAULT.get_or_init(process_default)
}

fn process_default() -> Result<Backend, Error> {
    match std::env::var(ENV) {
        Ok(name) if !name.is_empty() => name.parse(),
        _ => Ok(if probe(Backend::IoUring).is_ok() { Backend::IoUring } else { Backend::Epoll }),
    }
}

/// Runs `f` with `backend` as this thread's default: completion ports built in `f` without an
/// explicit backend, and sockets created in `f` (for their event and completion-routine
/// operations, which run on that backend's engine) use it. Fails with
/// [`ErrorKind::Unsupported`] (and the reason's errno) without running `f` if the backend
/// cannot run here.
///
/// This is how the test suite runs every test on every backend; an application usually sets
/// `OVERLAPPED_BACKEND` or [`PortBuilder::backend`](crate::PortBuilder::backend) instead.
pub fn with_default_backend<R>(backend: Backend, f: impl FnOnce() -> R) -> Result<R, Error> {
    backend.probe().map_err(unavailable)?;
    let previous = THREAD_DEFAULT.with(|d| d.replace(Some(backend)));
    struct Restore(Option<Backend>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_DEFAULT.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(previous);
    Ok(f())
}

/// The error for a backend that was asked for but cannot be set up: `Unsupported`, keeping
/// the errno that says why (`EPERM` from a seccomp filter or `io_uring_disabled`, `ENOSYS`, ...).
pub(crate) fn unavailable(e: Error) -> Error {
    match e.raw_os_error() {
        Some(errno) => Error::with_errno(ErrorKind::Unsupported, errno),
        None => Error::new(ErrorKind::Unsupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip_and_unknown_names_are_refused() {
        for b in Backend::ALL {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
            assert_eq!(b.to_string(), b.name());
        }
        let e = "uring".parse::<Backend>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn a_thread_default_applies_inside_its_scope_only_and_nests() {
        let outside = thread_default();
        with_default_backend(Backend::Epoll, || {
            assert_eq!(thread_default(), Some(Backend::Epoll));
            assert_eq!(default_backend().unwrap(), Backend::Epoll);
            if Backend::IoUring.probe().is_ok() {
                with_default_backend(Backend::IoUring, || assert_eq!(thread_default(), Some(Backend::IoUring)))
                    .unwrap();
            }
            assert_eq!(thread_default(), Some(Backend::Epoll), "the inner scope restored the outer default");
            // Another thread does not see this thread's default.
            std::thread::spawn(|| assert_eq!(thread_default(), None)).join().unwrap();
        })
        .unwrap();
        assert_eq!(thread_default(), outside);
    }

    #[test]
    fn a_default_is_restored_even_when_the_scope_panics() {
        let r = std::panic::catch_unwind(|| {
            let _ = with_default_backend(Backend::Epoll, || panic!("inside"));
        });
        assert!(r.is_err());
        assert_eq!(thread_default(), None);
    }
}
