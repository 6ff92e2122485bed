//! ONNX Runtime's intra-op threads: how many, and whether idle ones spin.

/// Intra-op threads: one per core.
pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether idle intra-op pool threads spin between kernels or sleep. Spinning saves waking a
/// sleeping thread for every kernel (hundreds a decoder step), but a spinning thread holds its
/// core against anything else that wants it. Measured, small-size decoder step on 2 cores,
/// sleeping → spinning: quiet, int8 14.2 → 11.0 ms and float32 25.4 → 20.2 ms; beside one other
/// busy process, int8 13.6 → 18.9 ms and float32 27.2 → 40.6 ms. So they spin only when nothing
/// else wants a core as the runtime opens (`/proc/stat`'s `procs_running`, [`LOOKS`] looks 2 ms
/// apart, this thread the one allowed: see [`quiet`]) on a machine whose hypervisor has taken
/// under a tenth of its CPU time since boot (`steal`: a virtual machine's cores shared with other
/// guests, which no process count shows); `IGPT_ORT_SPIN=1` or `0` decides instead.
pub(super) fn pool_threads_spin() -> bool {
    match std::env::var("IGPT_ORT_SPIN").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        Ok(other) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!("warning: IGPT_ORT_SPIN is {other:?}, not 1 or 0: deciding by the load");
            });
        }
        Err(_) => {}
    }
    let mut looks = Vec::with_capacity(LOOKS);
    for look in 0..LOOKS {
        if look > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return false;
        };
        looks.push(stat);
    }
    quiet(&looks)
}

/// How many times [`pool_threads_spin`] reads `/proc/stat`.
const LOOKS: usize = 5;

/// Whether successive `/proc/stat` texts show a quiet machine: the hypervisor has taken under a
/// tenth of all CPU time since boot, and at most one look saw another runnable process. A process
/// that wants a core shows in nearly every look; a kernel thread's wake-up or an exiting process
/// in one, and should not make a whole run's threads sleep.
fn quiet(looks: &[String]) -> bool {
    let steal = looks.last().and_then(|s| steal_share(s));
    let busy = looks.iter().filter(|s| procs_running(s) != Some(1)).count();
    steal.is_some_and(|s| s < 0.1) && busy <= 1
}

/// The `procs_running` count of a `/proc/stat` text.
fn procs_running(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("procs_running "))?
        .trim()
        .parse()
        .ok()
}

/// The share of all CPU time since boot the hypervisor took (`steal`, the eighth figure of the
/// `cpu` line of a `/proc/stat` text).
fn steal_share(stat: &str) -> Option<f64> {
    let line = stat.lines().find_map(|l| l.strip_prefix("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let total: u64 = ticks.iter().sum();
    (ticks.len() == 8 && total > 0).then(|| ticks[7] as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_running_and_steal_are_read_from_their_lines() {
        let stat = "cpu  60 0 10 20 0 0 0 10 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nctxt 99\nprocs_running 3\nprocs_blocked 0\n";
        assert_eq!(procs_running(stat), Some(3));
        assert_eq!(steal_share(stat), Some(0.1));
        assert_eq!(procs_running("cpu 1 2 3\nprocs_blocked 0\n"), None);
        assert_eq!(procs_running("procs_running x\n"), None);
        // An older kernel's shorter line, or nothing counted yet: no figure.
        assert_eq!(steal_share("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(steal_share("cpu  0 0 0 0 0 0 0 0\n"), None);
    }

    #[test]
    fn one_blip_of_another_process_leaves_the_machine_quiet_two_do_not() {
        let stat = |running: u32, steal: u32| {
            format!(
                "cpu  {} 0 10 20 0 0 0 {steal} 0 0\nprocs_running {running}\n",
                70 - steal
            )
        };
        let looks = |running: &[u32], steal: u32| -> Vec<String> {
            running.iter().map(|&r| stat(r, steal)).collect()
        };
        assert!(quiet(&looks(&[1, 1, 1, 1, 1], 0)));
        assert!(quiet(&looks(&[1, 1, 2, 1, 1], 0)));
        assert!(!quiet(&looks(&[1, 2, 1, 2, 1], 0)));
        assert!(!quiet(&looks(&[2, 2, 2, 2, 2], 0)));
        // Steal at a tenth of the time (10 of 100 ticks): shared cores, whatever the count.
        assert!(!quiet(&looks(&[1, 1, 1, 1, 1], 10)));
        assert!(quiet(&looks(&[1, 1, 1, 1, 1], 9)));
        // Unreadable figures: not quiet.
        assert!(!quiet(&["procs_running 1\n".to_string()]));
        assert!(!quiet(&[]));
    }
}
