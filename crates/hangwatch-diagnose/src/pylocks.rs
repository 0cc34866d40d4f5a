//! Who holds the Python lock a thread waits for, named only from evidence.
//!
//! A thread blocked on a `threading.Lock` or `threading.RLock` sleeps in `futex` on the
//! semaphore the lock object points to (`lock_lock`, the object's third word on every CPython
//! from 3.6 to 3.13). That address is the only fact the kernel gives; the rest is read from the
//! target's memory while it runs, and each value is checked before it is believed:
//!
//! 1. **Which lock.** The writable anonymous memory of the process is scanned for the futex
//!    address. A hit at `H` is a lock object at `H - 16` only when its type is named
//!    `_thread.lock` or `_thread.RLock` and its reference count is positive.
//! 2. **An `RLock` names its owner.** It records the owner's thread ident and the recursion
//!    count; the ident is matched to a Python thread of the dump.
//! 3. **A `Lock` used in a `with` block.** A `Lock` records no owner, but `with lock:` keeps the
//!    bound `__exit__` of the lock on the frame's value stack for as long as the block runs
//!    (`SETUP_WITH` before 3.11, `BEFORE_WITH` after), a live `builtin_function_or_method` whose
//!    `m_self` is the lock. A second scan counts those, and the `__enter__` methods of threads
//!    still entering (`with` holds both while `__enter__` blocks). Exits minus enters is the
//!    number of `with` blocks that hold the lock now. The source names where: a thread whose
//!    frame's line lies inside a `with EXPR:` statement of the same expression, in the same
//!    file, and (when the expression starts with a local name such as `self`) on the same
//!    object, is the candidate. The holder is named only when memory says exactly one `with`
//!    block holds the lock and the source points at exactly one frame; otherwise the wait is
//!    undecided, with the reason.
//!
//! A lock taken with a bare `acquire()` leaves no trace but its `locked` flag: the wait is then
//! undecided, and says so. A wrong holder would be worse than none.
//!
//! # Caveats
//!
//! - CPython 3.14 enters `with` blocks without a bound `__exit__` object (`LOAD_SPECIAL`); only
//!   `RLock` owners are read there.
//! - A `Condition` built on a plain `Lock` enters it through `Condition.__enter__`, a method
//!   call that binds no `__exit__` of the lock: only a `Condition` on an `RLock` (the default)
//!   names its holder.
//! - The scan reads at most [`SCAN_BUDGET`] bytes; a process with more writable memory is read
//!   partly, and a lock not found is then said to be unknown, never guessed.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::memory::Memory;
use crate::model::{PythonFrame, ThreadDiagnosis};
use crate::syscall::Call;

/// The most memory one diagnosis scans for lock objects, per pass.
pub const SCAN_BUDGET: u64 = 512 << 20;
/// Bytes read per `process_vm_readv`.
const CHUNK: usize = 1 << 20;

/// What a diagnosis found about the Python lock a thread waits for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PythonLockWait {
    /// The lock as the waiting code names it (`payments`, `self._lock`), or `a Lock at 0x…`.
    pub lock: String,
    /// `Lock` or `RLock`.
    pub kind: String,
    /// The lock object's address.
    pub address: u64,
    /// Where the thread waits for it (`worker.py:30`).
    pub at: Option<String>,
    /// The thread that holds it, when the evidence decides.
    pub holder: Option<i32>,
    /// Where the holder took it (`worker.py:15`), when a `with` statement shows it.
    pub held_at: Option<String>,
    /// The name the holder's `with` statement gives the lock, when it differs from `lock`
    /// (a parameter, another variable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_as: Option<String>,
    /// How many times the holder holds an `RLock`.
    pub count: Option<u64>,
    /// How the holder is known, or why it cannot be told.
    pub evidence: String,
}

/// A lock object found in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockObject {
    /// The object's address.
    pub addr: u64,
    /// What it is, with what it records.
    pub state: LockState,
}

/// The state a lock object records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// `_thread.lock`: only whether it is held.
    Lock {
        /// The `locked` flag.
        locked: bool,
    },
    /// `_thread.RLock`: the owner's thread ident (0 when free) and the recursion count.
    RLock {
        /// `threading.get_ident()` of the owner.
        owner: u64,
        /// How many times the owner acquired it.
        count: u64,
    },
}

/// The ranges worth scanning in a `/proc/PID/maps` text: private writable mappings without a
/// file (the heap, `pymalloc` arenas, `mmap`ed blocks), where Python objects and `malloc`ed
/// semaphores live. Thread stacks (8 MiB each, right above their `---p` guard page) hold no
/// objects and are left out.
#[must_use]
pub fn scannable_regions(maps: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    // End of the last inaccessible (`---p`) mapping: a guard page right below a stack.
    let mut guard_end = None;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let path = fields.nth(3).unwrap_or("");
        let Some((start, end)) = range.split_once('-').and_then(|(start, end)| {
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        }) else {
            continue;
        };
        let writable = perms.starts_with("rw") && perms.ends_with('p');
        let anonymous = path.is_empty() || path == "[heap]";
        if writable && anonymous && guard_end != Some(start) {
            out.push((start, end));
        }
        guard_end = perms.starts_with("---").then_some(end);
    }
    out
}

/// Addresses (8-byte aligned) in `regions` holding any of `values`, and whether the budget
/// cut the scan short.
fn scan(
    memory: &Memory,
    regions: &[(u64, u64)],
    values: &HashSet<u64>,
) -> (HashMap<u64, Vec<u64>>, bool) {
    let mut hits: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut sorted: Vec<u64> = values.iter().copied().filter(|&v| v != 0).collect();
    sorted.sort_unstable();
    let (Some(&low), Some(&high)) = (sorted.first(), sorted.last()) else {
        return (hits, false);
    };
    let mut budget = SCAN_BUDGET;
    let mut buf = vec![0u8; CHUNK];
    for &(start, end) in regions {
        let mut at = start;
        while at < end {
            let len = (end - at).min(CHUNK as u64).min(budget);
            if len == 0 {
                return (hits, true);
            }
            budget -= len;
            let chunk = &mut buf[..len as usize];
            if memory.read(at, chunk).is_ok() {
                for (i, word) in chunk.chunks_exact(8).enumerate() {
                    let value = u64::from_ne_bytes(word.try_into().unwrap_or_default());
                    // Most words are small numbers or other pointers: one range test each.
                    if (low..=high).contains(&value) && sorted.binary_search(&value).is_ok() {
                        hits.entry(value).or_default().push(at + 8 * i as u64);
                    }
                }
            }
            at += len;
        }
    }
    (hits, false)
}

/// Reads object headers and type names, caching each type's name.
struct Objects<'a> {
    memory: &'a Memory,
    type_names: HashMap<u64, Option<String>>,
}

impl Objects<'_> {
    /// The type name of a live object at `addr` (positive reference count), if believable.
    fn type_name(&mut self, addr: u64) -> Option<String> {
        let refcnt = self.memory.read_u64(addr).ok()?;
        if refcnt == 0 || refcnt > 1 << 48 {
            return None;
        }
        let ty = self.memory.read_u64(addr + 8).ok()?;
        let memory = self.memory;
        self.type_names
            .entry(ty)
            .or_insert_with(|| {
                // PyTypeObject: refcount, type, size, then tp_name.
                let name = memory.read_u64(ty.checked_add(24)?).ok()?;
                memory.read_c_string(name, 64).ok()
            })
            .clone()
    }

    /// The lock object whose semaphore is at `futex`, from a word at `hit` that holds it.
    fn lock_at(&mut self, hit: u64) -> Option<LockObject> {
        let addr = hit.checked_sub(16)?;
        let state = match self.type_name(addr)?.as_str() {
            "_thread.lock" => {
                let mut flag = [0u8; 1];
                self.memory.read(addr + 32, &mut flag).ok()?;
                LockState::Lock {
                    locked: flag[0] != 0,
                }
            }
            "_thread.RLock" => LockState::RLock {
                owner: self.memory.read_u64(addr + 24).ok()?,
                count: self.memory.read_u64(addr + 32).ok()?,
            },
            _ => return None,
        };
        Some(LockObject { addr, state })
    }

    /// `__enter__` or `__exit__` when the word at `hit` is the `m_self` of a live bound
    /// built-in method of that name.
    fn bound_method_at(&mut self, hit: u64) -> Option<&'static str> {
        let method = hit.checked_sub(24)?;
        if self.type_name(method)? != "builtin_function_or_method" {
            return None;
        }
        let def = self.memory.read_u64(method + 16).ok()?;
        let name = self
            .memory
            .read_c_string(self.memory.read_u64(def).ok()?, 16)
            .ok()?;
        match name.as_str() {
            "__enter__" => Some("__enter__"),
            "__exit__" => Some("__exit__"),
            _ => None,
        }
    }
}

/// How many bound `__exit__` and `__enter__` methods of one lock are alive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WithCounts {
    /// Live bound `__exit__`: one per `with` block inside or entering.
    pub exits: usize,
    /// Live bound `__enter__`: one per `with` statement still entering.
    pub enters: usize,
}

impl WithCounts {
    /// `with` blocks that hold the lock now.
    #[must_use]
    pub fn held(self) -> usize {
        self.exits.saturating_sub(self.enters)
    }
}

/// The lock objects behind the futex addresses `futexes`, and for each plain `Lock` how many
/// `with` blocks are in or entering it. The second value says whether a scan was cut short.
pub fn find_locks(
    memory: &Memory,
    maps: &str,
    futexes: &HashSet<u64>,
) -> (HashMap<u64, (LockObject, WithCounts)>, bool) {
    let regions = scannable_regions(maps);
    let (hits, cut) = scan(memory, &regions, futexes);
    let mut objects = Objects {
        memory,
        type_names: HashMap::new(),
    };
    let mut found: HashMap<u64, LockObject> = HashMap::new();
    for (futex, places) in &hits {
        let locks: Vec<LockObject> = places.iter().filter_map(|&h| objects.lock_at(h)).collect();
        // Two lock objects on one semaphore cannot be: believe neither.
        if let [lock] = locks.as_slice() {
            found.insert(*futex, *lock);
        }
    }
    let addresses: HashSet<u64> = found.values().map(|lock| lock.addr).collect();
    let (refs, cut_again) = if addresses.is_empty() {
        (HashMap::new(), false)
    } else {
        scan(memory, &regions, &addresses)
    };
    let mut counts: HashMap<u64, WithCounts> = HashMap::new();
    for (lock, places) in &refs {
        let entry = counts.entry(*lock).or_default();
        for &hit in places {
            match objects.bound_method_at(hit) {
                Some("__exit__") => entry.exits += 1,
                Some("__enter__") => entry.enters += 1,
                _ => {}
            }
        }
    }
    let out = found
        .into_iter()
        .map(|(futex, lock)| {
            let with = counts.get(&lock.addr).copied().unwrap_or_default();
            (futex, (lock, with))
        })
        .collect();
    (out, cut || cut_again)
}

/// The expression a line of source acquires: `X` of `with X:` / `with X as y:` or of
/// `X.acquire(...)`; `None` for anything else (or a `with` of several items, which names no
/// single lock).
#[must_use]
pub fn acquired_expression(code: &str) -> Option<String> {
    let code = code.trim();
    if let Some(items) = with_items(code) {
        return match items.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
    }
    let (before, _) = code.split_once(".acquire(")?;
    let expr = before
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .next()?;
    (!expr.is_empty()).then(|| expr.to_owned())
}

/// The items of a `with` statement line: `with a, b as c:` gives `[a, b]`.
#[must_use]
pub fn with_items(code: &str) -> Option<Vec<String>> {
    let rest = code.trim().strip_prefix("with ")?;
    let header = rest.split_once(':').map_or(rest, |(head, _)| head).trim();
    let header = header
        .strip_prefix('(')
        .and_then(|h| h.strip_suffix(')'))
        .unwrap_or(header);
    let items: Vec<String> = split_top_level(header)
        .into_iter()
        .map(|item| {
            let item = item.trim();
            item.split_once(" as ")
                .map_or(item, |(expr, _)| expr.trim())
                .to_owned()
        })
        .filter(|item| !item.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

/// Splits at commas outside brackets.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut depth = 0i32;
    let mut start = 0;
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// A `with` statement that encloses a line: its line number and items.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WithBlock {
    /// 1-based line of the `with` statement.
    pub line: i32,
    /// Its context-manager expressions.
    pub items: Vec<String>,
}

/// The `with` statements whose body holds line `line` (1-based) of `source`, innermost first,
/// up to the enclosing `def` or `class`. Found by indentation: each line above with less
/// indentation than everything seen so far opens a block around it.
#[must_use]
pub fn enclosing_withs(source: &[String], line: i32) -> Vec<WithBlock> {
    let Some(index) = usize::try_from(line).ok().and_then(|l| l.checked_sub(1)) else {
        return Vec::new();
    };
    let Some(current) = source.get(index) else {
        return Vec::new();
    };
    let indent = |text: &str| text.len() - text.trim_start().len();
    let mut level = indent(current);
    let mut out = Vec::new();
    for (i, text) in source[..index].iter().enumerate().rev() {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || indent(text) >= level {
            continue;
        }
        level = indent(text);
        if let Some(items) = with_items(trimmed) {
            out.push(WithBlock {
                line: i32::try_from(i + 1).unwrap_or(i32::MAX),
                items,
            });
        }
        let opens_scope = ["def ", "async def ", "class "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if opens_scope || level == 0 {
            break;
        }
    }
    out
}

/// The first name of an expression: `self` of `self._lock`.
fn head_name(expr: &str) -> &str {
    expr.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or(expr)
}

/// Whether `expr` in frame `a` and in frame `b` can name the same object: the same text in
/// the same file, and when its first name is a local variable, the same object in both.
fn same_object(expr: &str, a: &PythonFrame, b: &PythonFrame) -> bool {
    if a.file != b.file {
        return false;
    }
    let head = head_name(expr);
    let local = |frame: &PythonFrame| {
        frame
            .locals
            .iter()
            .find(|(name, _)| name == head)
            .map(|(_, addr)| *addr)
    };
    local(a) == local(b)
}

/// Whether `item` is a local variable of `frame` whose object is at `addr`.
fn local_is(frame: &PythonFrame, item: &str, addr: u64) -> bool {
    frame
        .locals
        .iter()
        .any(|(name, object)| name == item && *object == addr)
}

/// The frame of `thread` that acquires the lock it waits on: its innermost frame of the
/// program's own code, when that line acquires an expression and nothing but a
/// `Condition.__enter__` of the standard library lies inside it. A thread inside
/// `Condition.wait`, `Event.wait`, `Thread.join` or a queue waits on a lock of the library's
/// own (a notification, not a lock someone holds) and has none.
fn acquiring_frame(thread: &ThreadDiagnosis) -> Option<(&PythonFrame, String)> {
    let frames = &thread.python.as_ref()?.frames;
    let user = frames
        .iter()
        .position(|f| !crate::model::is_stdlib(&f.file))?;
    let inside_ok = frames[..user]
        .iter()
        .all(|f| f.function.ends_with("__enter__"));
    if !inside_ok {
        return None;
    }
    let frame = &frames[user];
    Some((frame, acquired_expression(frame.code.as_deref()?)?))
}

/// Fills in [`ThreadDiagnosis::python_lock`] and [`ThreadDiagnosis::lock_owner`] of the threads
/// of one CPython process that wait on a `threading` lock.
pub fn resolve(
    pid: i32,
    memory: &Memory,
    threads: &mut [ThreadDiagnosis],
    missing: &mut Vec<String>,
) {
    let futexes: HashSet<u64> = threads
        .iter()
        .filter(|t| t.python.is_some() && t.state != "running")
        .filter_map(|t| match &t.call {
            Some(Call::Futex { addr, .. }) => Some(*addr),
            _ => None,
        })
        .collect();
    if futexes.is_empty() {
        return;
    }
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return;
    };
    let (locks, cut) = find_locks(memory, &maps, &futexes);
    if cut {
        missing.push(format!(
            "Python lock objects of pid {pid}: only the first {} MiB of its writable memory \
             were searched; a lock not found there is not named",
            SCAN_BUDGET >> 20
        ));
    }
    let by_ident: HashMap<u64, i32> = threads
        .iter()
        .filter_map(|t| Some((t.python.as_ref()?.ident?, t.tid)))
        .collect();
    let mut waits: Vec<(usize, PythonLockWait)> = Vec::new();
    for (index, waiter) in threads.iter().enumerate() {
        let Some(Call::Futex { addr, .. }) = &waiter.call else {
            continue;
        };
        let Some(&(lock, with)) = locks.get(addr) else {
            continue;
        };
        let Some(acquiring) = acquiring_frame(waiter) else {
            continue;
        };
        let acquiring = Some(acquiring);
        let name = acquiring.as_ref().map_or_else(
            || format!("a {} at {:#x}", kind_name(lock.state), lock.addr),
            |(_, expr)| expr.clone(),
        );
        let at = acquiring.as_ref().map(|(frame, _)| frame.location());
        // Where a thread holds the lock in `with` blocks, as the source shows it, outermost
        // first (an RLock re-entered across a call: `w.py:49 and w.py:44`), with the name the
        // holder's code gives it. A block holds it when its item is the waiter's expression on
        // the same object, or a local variable whose object is the lock itself.
        let held_in_source = |holder: &ThreadDiagnosis| -> Option<(String, String)> {
            let (waiting_frame, expr) = acquiring.as_ref()?;
            let mut held_as = None;
            let places: Vec<String> = holder
                .python
                .as_ref()?
                .frames
                .iter()
                .rev()
                .flat_map(|frame| {
                    frame
                        .with_blocks
                        .iter()
                        .rev()
                        .filter_map(|block| {
                            let item = block.items.iter().find(|item| {
                                (*item == expr && same_object(expr, waiting_frame, frame))
                                    || local_is(frame, item, lock.addr)
                            })?;
                            Some((item.clone(), block.line))
                        })
                        .map(|(item, line)| {
                            held_as.get_or_insert(item);
                            format!("{}:{line}", short_file(&frame.file))
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            Some((places.join(" and "), held_as?))
        };
        let mut wait = PythonLockWait {
            lock: name.clone(),
            kind: kind_name(lock.state).to_owned(),
            address: lock.addr,
            at,
            holder: None,
            held_at: None,
            held_as: None,
            count: None,
            evidence: String::new(),
        };
        match lock.state {
            LockState::RLock { owner: 0, .. } | LockState::Lock { locked: false } => {
                wait.evidence = format!(
                    "the {} was free when read: it was released while the diagnosis ran",
                    kind_name(lock.state)
                );
            }
            LockState::RLock { owner, count } => match by_ident.get(&owner) {
                Some(&tid) => {
                    let holder = threads.iter().find(|t| t.tid == tid);
                    wait.holder = Some(tid);
                    wait.count = Some(count);
                    if let Some((place, held_as)) = holder.and_then(held_in_source) {
                        wait.held_at = Some(place);
                        wait.held_as = (held_as != name).then_some(held_as);
                    }
                    wait.evidence = format!(
                        "the RLock records its owner (thread ident {owner:#x}) and count {count}"
                    );
                }
                None => {
                    wait.evidence = format!(
                        "the RLock records owner ident {owner:#x}, which is no thread the \
                         interpreter lists (a thread that exited holding it)"
                    );
                }
            },
            LockState::Lock { locked: true } => {
                let candidates: Vec<(i32, (String, String))> = threads
                    .iter()
                    .filter_map(|t| Some((t.tid, held_in_source(t)?)))
                    .collect();
                match (with.held(), candidates.as_slice()) {
                    (1, [(tid, (place, held_as))]) => {
                        wait.holder = Some(*tid);
                        wait.held_at = Some(place.clone());
                        wait.held_as = (*held_as != name).then(|| held_as.clone());
                        wait.evidence = format!(
                            "one with block holds the Lock (its bound __exit__ is alive) and \
                             only the source at {place} encloses the thread's line in `with \
                             {held_as}:` on the same object"
                        );
                    }
                    (0, _) => {
                        wait.evidence = format!(
                            "the Lock is held, but by no with block (no bound __exit__ of it is \
                             alive): it was taken with a bare acquire() (or through a wrapper, \
                             such as a Condition on a plain Lock), and a Lock records no owner, \
                             so who holds {name} cannot be told"
                        );
                    }
                    (held, []) => {
                        wait.evidence = format!(
                            "{held} with block(s) hold the Lock, but no thread's source shows \
                             `with {name}:` around its line (it is held under another name), \
                             so who holds it cannot be told"
                        );
                    }
                    (held, many) => {
                        wait.evidence = format!(
                            "{held} with block(s) hold the Lock and {} threads are inside `with \
                             {name}:` blocks; which one holds this Lock cannot be told",
                            many.len()
                        );
                    }
                }
            }
        }
        waits.push((index, wait));
    }
    for (index, wait) in waits {
        let thread = &mut threads[index];
        thread.lock_owner = wait.holder.filter(|&holder| holder != thread.tid);
        thread.python_lock = Some(wait);
    }
}

fn kind_name(state: LockState) -> &'static str {
    match state {
        LockState::Lock { .. } => "Lock",
        LockState::RLock { .. } => "RLock",
    }
}

fn short_file(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn the_acquired_expression_is_read_from_with_and_acquire_lines() {
        assert_eq!(
            acquired_expression("with payments:").as_deref(),
            Some("payments")
        );
        assert_eq!(
            acquired_expression("    with self._lock as held:  # note").as_deref(),
            Some("self._lock")
        );
        assert_eq!(
            acquired_expression("ok = state.lock.acquire(timeout=5)").as_deref(),
            Some("state.lock")
        );
        assert_eq!(
            acquired_expression("first_lock.acquire()").as_deref(),
            Some("first_lock")
        );
        assert_eq!(
            acquired_expression("with a, b:"),
            None,
            "two locks: not one name"
        );
        assert_eq!(acquired_expression("time.sleep(1)"), None);
        assert_eq!(
            with_items("with (open(p, 'w') as f, lock):"),
            Some(vec!["open(p, 'w')".to_owned(), "lock".to_owned()])
        );
    }

    #[test]
    fn enclosing_with_blocks_are_found_by_indentation_within_the_function() {
        let source = lines(
            "import threading\n\
             with outer:\n\
             \x20   pass\n\
             def work():\n\
             \x20   with orders:\n\
             \x20       # a comment\n\
             \n\
             \x20       for x in y:\n\
             \x20           with payments as p:\n\
             \x20               time.sleep(1)\n\
             \x20       with other:\n",
        );
        let blocks = enclosing_withs(&source, 10);
        assert_eq!(
            blocks,
            vec![
                WithBlock {
                    line: 9,
                    items: vec!["payments".into()]
                },
                WithBlock {
                    line: 5,
                    items: vec!["orders".into()]
                },
            ]
        );
        // The `with` line itself is being entered, not held.
        assert_eq!(
            enclosing_withs(&source, 11),
            vec![WithBlock {
                line: 5,
                items: vec!["orders".into()]
            }]
        );
        assert!(enclosing_withs(&source, 1).is_empty());
        assert!(enclosing_withs(&source, 99).is_empty());
    }

    #[test]
    fn only_private_anonymous_writable_mappings_but_stacks_are_scanned() {
        let maps = "\
55d0c0a00000-55d0c0a01000 rw-p 00000000 08:01 1234  /usr/bin/python3.11
55d0c1000000-55d0c1200000 rw-p 00000000 00:00 0     [heap]
7f1e2a000000-7f1e2a100000 rw-p 00000000 00:00 0
7f1e2a100000-7f1e2a101000 ---p 00000000 00:00 0
7f1e2a101000-7f1e2a901000 rw-p 00000000 00:00 0
7f1e2b000000-7f1e2b100000 r--p 00000000 00:00 0
7f1e2c000000-7f1e2c100000 rw-s 00000000 00:05 77    /dev/shm/x
7ffc1a000000-7ffc1a021000 rw-p 00000000 00:00 0     [stack]
";
        assert_eq!(
            scannable_regions(maps),
            vec![
                (0x55d0_c100_0000, 0x55d0_c120_0000),
                (0x7f1e_2a00_0000, 0x7f1e_2a10_0000)
            ]
        );
    }

    #[test]
    fn with_counts_subtract_the_threads_still_entering() {
        let counts = WithCounts {
            exits: 3,
            enters: 2,
        };
        assert_eq!(counts.held(), 1);
        assert_eq!(
            WithCounts {
                exits: 0,
                enters: 1
            }
            .held(),
            0
        );
    }
}
