//! Who holds the lock a thread waits for, where the lock records it, and cycles among them.
//!
//! A glibc `pthread_mutex_t` keeps its owner's TID in the word 8 bytes after its futex word
//! (`__lock`, `__count`, `__owner`, the same on every 64-bit glibc target). A contended
//! lock waits with `futex(WAIT, 2)`; a priority-inheritance mutex (`LOCK_PI`) keeps the owner
//! in the futex word itself. The memory is read while the program runs, so an owner is only
//! believed when it is a live thread of the same process other than the waiter and the lock
//! word still says "locked".
//!
//! Locks that record no owner — Python's `threading.Lock`, semaphores, condition variables —
//! yield `None`: the report then says where the thread waits, not who holds the lock.

use std::collections::{BTreeMap, HashSet};

use crate::memory::Memory;
use crate::syscall::Call;

/// The TID holding the mutex `call` waits on, if the lock records it and it is believable.
#[must_use]
pub fn mutex_owner(
    memory: &Memory,
    call: &Call,
    waiter: i32,
    threads: &HashSet<i32>,
) -> Option<i32> {
    let Call::Futex {
        op, addr, expected, ..
    } = call
    else {
        return None;
    };
    let owner = match op.as_str() {
        // glibc's lll_lock_wait: the word is set to 2 ("locked, with waiters") and waited on.
        "WAIT" if *expected == 2 => {
            if memory.read_u32(*addr).ok()? == 0 {
                return None;
            }
            memory.read_i32(addr.checked_add(8)?).ok()?
        }
        "LOCK_PI" | "LOCK_PI2" => (memory.read_u32(*addr).ok()? & libc::FUTEX_TID_MASK) as i32,
        _ => return None,
    };
    (owner > 0 && owner != waiter && threads.contains(&owner)).then_some(owner)
}

/// Cycles in a wait-for graph (waiter → owner), each listed once from its smallest TID.
#[must_use]
pub fn cycles(waits_for: &BTreeMap<i32, i32>) -> Vec<Vec<i32>> {
    let mut found: Vec<Vec<i32>> = Vec::new();
    let mut seen: HashSet<i32> = HashSet::new();
    for &start in waits_for.keys() {
        if seen.contains(&start) {
            continue;
        }
        // Follow the chain from `start`; a cycle is where it meets itself.
        let mut path: Vec<i32> = Vec::new();
        let mut at = start;
        while let Some(&next) = waits_for.get(&at) {
            if let Some(pos) = path.iter().position(|t| *t == at) {
                let mut cycle = path[pos..].to_vec();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, t)| **t)
                    .map(|(i, _)| i);
                cycle.rotate_left(min.unwrap_or(0));
                if !found.contains(&cycle) {
                    found.push(cycle);
                }
                break;
            }
            if seen.contains(&at) {
                break;
            }
            path.push(at);
            at = next;
        }
        seen.extend(path);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_two_thread_cycle_once_and_ignores_chains() {
        let graph = BTreeMap::from([(10, 11), (11, 10), (12, 10), (20, 21)]);
        assert_eq!(cycles(&graph), vec![vec![10, 11]]);
        let three = BTreeMap::from([(5, 3), (3, 4), (4, 5)]);
        assert_eq!(cycles(&three), vec![vec![3, 4, 5]]);
        assert!(cycles(&BTreeMap::from([(1, 2), (2, 3)])).is_empty());
    }

    #[test]
    fn reads_the_owner_of_a_locked_glibc_mutex_laid_out_in_memory() {
        // The first 12 bytes of a locked, contended pthread_mutex_t: __lock = 2, __count = 0,
        // __owner = 4242.
        let words: [i32; 3] = [2, 0, 4242];
        let addr = words.as_ptr() as u64;
        let memory = Memory::of(std::process::id() as i32);
        let call = Call::Futex {
            op: "WAIT".into(),
            addr,
            expected: 2,
            timeout: crate::syscall::Timeout::Never,
        };
        let threads = HashSet::from([4242, 7]);
        assert_eq!(mutex_owner(&memory, &call, 7, &threads), Some(4242));
        // An owner that is not a thread of the process is not believed.
        assert_eq!(mutex_owner(&memory, &call, 7, &HashSet::from([7])), None);
        // A semaphore-style wait (expected 0) records no owner.
        let sem = Call::Futex {
            op: "WAIT_BITSET".into(),
            addr,
            expected: 0,
            timeout: crate::syscall::Timeout::Never,
        };
        assert_eq!(mutex_owner(&memory, &sem, 7, &threads), None);
    }
}
