//! What must be undone when the process is stopped by a signal, besides the temporaries
//! [`super::files`] tracks: a layer above registers an action (stop a child process, say) for as
//! long as the thing it undoes exists, and the interrupt handler
//! ([`super::files::remove_on_interrupt`]) runs every action still registered before it exits.
//!
//! The registry lives here, at the bottom, so that the handler needs to know nothing of the
//! layers that register into it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

type Action = Box<dyn Fn() + Send>;

/// Actions registered now, by registration id.
static ACTIONS: Mutex<Vec<(u64, Action)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn actions() -> MutexGuard<'static, Vec<(u64, Action)>> {
    // A panic while holding the lock leaves the list intact: keep using it.
    ACTIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// An action registered with [`on_interrupt`]; dropped, it is deregistered.
#[must_use = "the action is deregistered as soon as this is dropped"]
#[derive(Debug)]
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        actions().retain(|(id, _)| *id != self.id);
    }
}

/// Runs `action` if the process is stopped by SIGINT, SIGTERM or SIGHUP while the returned
/// [`Registration`] lives. The action runs on the handler's thread just before the process
/// exits, with the registry locked: it must not block or take locks the rest of the program
/// holds (a `kill(2)` of a known process id, not a wait on its `Child`).
pub fn on_interrupt(action: impl Fn() + Send + 'static) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    actions().push((id, Box::new(action)));
    Registration { id }
}

/// Runs every registered action, newest first (what was set up last is undone first). The
/// registry stays locked afterwards until the process exits, so that nothing deregisters (and
/// goes on, say, to reap a process whose id the action just used) in between.
pub(crate) fn run_all_and_hold() -> MutexGuard<'static, Vec<(u64, Action)>> {
    let list = actions();
    for (_, action) in list.iter().rev() {
        action();
    }
    list
}

#[cfg(test)]
impl Registration {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// Whether the registration `id` is still in the registry.
#[cfg(test)]
pub(crate) fn is_registered(id: u64) -> bool {
    actions().iter().any(|(i, _)| *i == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn an_action_is_registered_until_dropped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let reg = {
            let runs = Arc::clone(&runs);
            on_interrupt(move || {
                runs.fetch_add(1, Ordering::SeqCst);
            })
        };
        let id = reg.id();
        // Only this test's own action is run: others registered meanwhile by tests running in
        // parallel would stop real processes.
        for (i, action) in actions().iter() {
            if *i == id {
                action();
            }
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        drop(reg);
        assert!(!is_registered(id));
    }
}
