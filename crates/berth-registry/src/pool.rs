//! Bounded parallelism for a pull's downloads and a push's uploads, and an error's causes in
//! one line: what both directions share.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `work` on each of `items`, in their order, on `workers` threads at most. After the
/// first error no new item is begun; that error is returned once the items under way end.
pub(crate) fn run_until_error<T: Send, E: Send>(
    items: impl IntoIterator<Item = T>,
    workers: usize,
    work: impl Fn(T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let queue = Mutex::new(items.into_iter().collect::<VecDeque<_>>());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let Some(item) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        break;
                    };
                    if let Err(e) = work(item) {
                        failed.store(true, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// An error with its causes, `a: b: c` (a cause whose text the message already holds is
/// not repeated).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_and_the_first_error_stops_the_rest() {
        let seen = Mutex::new(Vec::new());
        run_until_error(0..50, 4, |i| {
            seen.lock().unwrap().push(i);
            Ok::<(), ()>(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());

        let begun = Mutex::new(0);
        let err = run_until_error(0..50, 1, |i| {
            *begun.lock().unwrap() += 1;
            if i == 3 {
                Err(format!("item {i}"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(err, "item 3");
        assert_eq!(*begun.lock().unwrap(), 4, "nothing begun after the error");
    }
}
