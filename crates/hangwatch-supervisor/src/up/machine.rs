//! The transitions of a service's [`Life`]: functions from (state, input) to (new state,
//! effects). They touch no process, clock or file: the loop performs the [`Effect`]s (spawn,
//! signal, diagnose, write an event), so every rule here is tested with a paused clock and a
//! stand-in for the stop handle.
//!
//! The rule for a stop that fails to begin (a scan of `/proc` or a signal failed): the service
//! stays in its stop, still due, the failure is an event, and the stop is tried again after
//! [`STOP_RETRY`]. A stalled service is therefore never left running unwatched, and the
//! supervisor goes on.

use std::time::Duration;

use hangwatch_config::{OnGiveUp, Probe, Service, StallDefer};
use hangwatch_diagnose::pressure::Pressure;
use hangwatch_process::ExitStatus;
use hangwatch_protocol::event::Event;
use hangwatch_protocol::exit_code;
use hangwatch_protocol::report::{OomCheck, StallSource, StopCause};
use tokio::time::Instant;

use super::policy::{self, Decision, Ending, Restarts};
use super::state::{Deferral, Life, Main, ProbeClock, Stop, Then, Tree, Watch};

/// How long after a failed attempt a stop is tried again.
pub(crate) const STOP_RETRY: Duration = Duration::from_millis(500);

/// What the loop must do after a transition, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Write an event about the service.
    Emit(Event),
    /// Record how the program ended, for `hangwatch status`.
    LastExit {
        /// Its status.
        status: ExitStatus,
        /// `exited`, `stalled`, … ([`StopCause::ending_word`]).
        reason: &'static str,
    },
    /// Signal the tree of the stop that is due.
    SignalTree,
    /// Diagnose the program before its stop; [`diagnosed`] follows.
    Diagnose {
        /// The program.
        pid: i32,
    },
    /// Start the program again now.
    Start,
    /// Stop the running dependents that declared `restart_with_dependency`.
    RestartDependents,
    /// Shut the supervisor down.
    Shutdown {
        /// Why.
        reason: String,
        /// hangwatch's exit code.
        exit_code: i32,
    },
}

/// What the restart policy needs to know.
pub(crate) struct Policy<'a> {
    /// The service's definition.
    pub(crate) cfg: &'a Service,
    /// Its restart bookkeeping.
    pub(crate) restarts: &'a mut Restarts,
    /// Whether the supervisor shuts down (nothing restarts then).
    pub(crate) shutting_down: bool,
    /// A number in [0, 1) for the backoff's jitter.
    pub(crate) random: f64,
}

/// The program said it is ready (or its probe passed, or it started and needs nothing more).
pub(crate) fn ready<S>(
    life: &mut Life<S>,
    by: &str,
    live_probe: Option<&Probe>,
    now: Instant,
) -> Vec<Effect> {
    let Life::Starting { .. } = life else {
        return Vec::new();
    };
    let Life::Starting {
        main, mut watch, ..
    } = std::mem::replace(life, Life::Waiting)
    else {
        return Vec::new();
    };
    watch.live_probe = live_probe.map(|probe| ProbeClock {
        next: now + probe.within,
        in_flight: false,
        give_up: None,
        failures: 0,
        not_made: false,
    });
    let after_ms = ms(main.uptime(now));
    *life = Life::Ready { main, watch };
    vec![Effect::Emit(Event::Ready {
        after_ms,
        by: by.to_owned(),
    })]
}

/// The program was reaped with `status`. A running program's tree is stopped (what it left
/// behind), and the restart policy decides once it is gone; during a diagnosis or a stop, the
/// end of that decides.
/// `oom` says whether the kernel's OOM killer sent a `KILL` hangwatch did not send.
pub(crate) fn exited<S>(
    life: &mut Life<S>,
    status: ExitStatus,
    oom: Option<OomCheck>,
    now: Instant,
) -> Vec<Effect> {
    match life {
        Life::Starting { main, .. } | Life::Ready { main, .. } => {
            main.status = Some(status);
            let reason = if oom.as_ref().is_some_and(OomCheck::killed) {
                "oom-killed"
            } else {
                "exited"
            };
            let exited = Event::Exited {
                pid: main.id.pid,
                status: status.to_record(),
                uptime_ms: ms(main.uptime(now)),
                stopped: false,
                killed: Vec::new(),
                oom,
            };
            let mut effects = vec![Effect::LastExit { status, reason }, Effect::Emit(exited)];
            effects.extend(stop(
                life,
                StopCause::Leftovers,
                Then::Decide(Ending::Exited(status)),
                now,
            ));
            effects
        }
        Life::Diagnosing { main, .. } => {
            main.status = Some(status);
            Vec::new()
        }
        Life::Stopping { main, .. } => {
            main.status = Some(status);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Begins stopping a service whose program runs (or is being diagnosed). Nothing for a
/// service in any other state: see [`redirect`] for one already stopping.
pub(crate) fn stop<S>(
    life: &mut Life<S>,
    cause: StopCause,
    then: Then,
    now: Instant,
) -> Vec<Effect> {
    if !matches!(
        life,
        Life::Starting { .. } | Life::Ready { .. } | Life::Diagnosing { .. }
    ) {
        return Vec::new();
    }
    let main = match std::mem::replace(life, Life::Waiting) {
        Life::Starting { main, .. } | Life::Ready { main, .. } | Life::Diagnosing { main, .. } => {
            main
        }
        _ => unreachable!("checked above"),
    };
    *life = Life::Stopping {
        main,
        stop: Stop {
            cause,
            then,
            tree: Tree::Due { at: now },
            pending: None,
            look: super::state::Look::NotYet,
        },
    };
    vec![Effect::SignalTree]
}

/// Changes what follows a stop already under way. A stop for the shutdown stays down.
pub(crate) fn redirect<S>(life: &mut Life<S>, then: Then) {
    if let Some(stop) = life.stop_mut()
        && stop.then != Then::Down
    {
        stop.then = then;
    }
}

/// A liveness source missed its deadline (or the tree is over its memory limit): diagnose
/// first when `diagnose`, then stop. When the diagnosis is already `under_way` (begun a
/// window before the deadline), it is only awaited.
pub(crate) fn stalled<S>(
    life: &mut Life<S>,
    cause: StopCause,
    diagnose: bool,
    under_way: bool,
    now: Instant,
) -> Vec<Effect> {
    if !life.up() {
        return Vec::new();
    }
    if !diagnose {
        return stop(life, cause, Then::Decide(Ending::Stopped), now);
    }
    let main = match std::mem::replace(life, Life::Waiting) {
        Life::Starting { main, .. } | Life::Ready { main, .. } => main,
        _ => unreachable!("checked above"),
    };
    let pid = main.id.pid;
    *life = Life::Diagnosing { main, cause };
    if under_way {
        return Vec::new();
    }
    vec![Effect::Diagnose { pid }]
}

/// The diagnosis before a stop is written (or failed): the stop begins.
pub(crate) fn diagnosed<S>(life: &mut Life<S>, now: Instant) -> Vec<Effect> {
    let Life::Diagnosing { cause, .. } = life else {
        return Vec::new();
    };
    let cause = *cause;
    stop(life, cause, Then::Decide(Ending::Stopped), now)
}

/// How often the pressure is read again while a stall waits: the kernel updates `avg10`
/// every 2 s.
pub(crate) const DEFER_RECHECK: Duration = Duration::from_secs(2);

/// What a passed stall deadline leads to ([`stall_due`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StallCall {
    /// Stop now. `deferred` says how the stop waited out pressure first, if it did.
    Stop {
        /// The wait, for the stall's event and incident.
        deferred: Option<crate::incident::Deferred>,
    },
    /// The stop waits until the deferral's `recheck` (the loop's timer); these effects first.
    Wait(Vec<Effect>),
}

/// The stall deadline `deadline` of `source` passed, as seen at `now` (at the deadline, or at
/// a recheck of a deferral). With `defer` (the service's `stall_defer_under_pressure`) and the
/// host's CPU or memory pressure at or above its threshold, the stop waits: the first time
/// with a `stall-deferred` event, then read again every [`DEFER_RECHECK`], up to `defer.up_to`
/// after the deadline. `pressure` is `None` where the kernel reports none: no deferral. Only a
/// heartbeat source (watchdog, status file, output) defers; the program's own
/// `WATCHDOG=trigger` or `STOPPING=1` never waits.
pub(crate) fn stall_due(
    deferral: &mut Option<Deferral>,
    defer: Option<&StallDefer>,
    source: StallSource,
    deadline: Instant,
    pressure: Option<Pressure>,
    now: Instant,
) -> StallCall {
    let held = deferral.take().filter(|d| d.deadline == deadline);
    let waited = |d: &Deferral, above_pct: f64| crate::incident::Deferred {
        for_ms: ms(now.saturating_duration_since(d.deadline)),
        peak_pct: d.peak_pct,
        above_pct,
        bound_reached: now >= d.until,
    };
    let deferrable = matches!(
        source,
        StallSource::Notify | StallSource::File | StallSource::Output
    );
    let Some(defer) = defer.filter(|_| deferrable) else {
        return StallCall::Stop { deferred: None };
    };
    let until = held.map_or(deadline + defer.up_to, |d| d.until);
    let worst = pressure.and_then(|p| p.worst());
    let pressed = worst.filter(|pct| *pct >= defer.above_pct);
    let (Some(pct), true) = (pressed, now < until) else {
        return StallCall::Stop {
            deferred: held.map(|d| waited(&d, defer.above_pct)),
        };
    };
    *deferral = Some(Deferral {
        source,
        deadline,
        until,
        recheck: (now + DEFER_RECHECK).min(until),
        peak_pct: held.map_or(pct, |d| d.peak_pct.max(pct)),
    });
    if held.is_some() {
        return StallCall::Wait(Vec::new());
    }
    let pressure = pressure.unwrap_or_default();
    StallCall::Wait(vec![Effect::Emit(Event::StallDeferred {
        source,
        cpu_pct: pressure.cpu,
        memory_pct: pressure.memory,
        above_pct: defer.above_pct,
        up_to_ms: millis(defer.up_to),
    })])
}

/// The deferred stall's source now has its stall deadline at `deadline_now`: a heartbeat
/// that moved it clears the stall (and the deferral), with a `stall-cleared` event.
pub(crate) fn deferral_cleared(
    deferral: &mut Option<Deferral>,
    deadline_now: Option<Instant>,
    now: Instant,
) -> Vec<Effect> {
    let Some(d) = *deferral else {
        return Vec::new();
    };
    if deadline_now.is_some_and(|at| at <= d.deadline) {
        return Vec::new();
    }
    *deferral = None;
    vec![Effect::Emit(Event::StallCleared {
        source: d.source,
        deferred_ms: ms(now.saturating_duration_since(d.deadline)),
    })]
}

/// The due stop's tree was signalled: its grace runs.
pub(crate) fn signalled<S>(life: &mut Life<S>, tree: S) {
    if let Life::Stopping { stop, .. } = life {
        stop.tree = Tree::Signalled(tree);
    }
}

/// Signalling the due stop's tree failed: it stays due, and is tried again after
/// [`STOP_RETRY`].
pub(crate) fn signal_failed<S>(life: &mut Life<S>, error: String, now: Instant) -> Vec<Effect> {
    let Life::Stopping { stop, .. } = life else {
        return Vec::new();
    };
    stop.tree = Tree::Due {
        at: now + STOP_RETRY,
    };
    vec![Effect::Emit(Event::StopFailed {
        cause: stop.cause,
        error,
        retry_in_ms: millis(STOP_RETRY),
    })]
}

/// A stop whose tree is gone, taken out of the state.
#[derive(Debug)]
pub(crate) struct Finished<S> {
    /// The program, reaped.
    pub(crate) main: Main,
    /// Why it was stopped.
    pub(crate) cause: StopCause,
    /// What follows ([`Then::Decide`]: call [`decide`]).
    pub(crate) then: Then,
    /// The stop handle, for its record.
    pub(crate) tree: S,
    /// A reload's new definition, to apply now.
    pub(crate) pending: Option<Box<Service>>,
}

/// Ends the stop when `gone` says its tree is gone and its program is reaped; the service goes
/// where the stop's [`Then`] says (for `Decide`, to `Exited` until [`decide`] says more).
pub(crate) fn finish_stop<S>(life: &mut Life<S>, gone: impl Fn(&S) -> bool) -> Option<Finished<S>> {
    let Life::Stopping { main, stop } = life else {
        return None;
    };
    let Tree::Signalled(tree) = &stop.tree else {
        return None;
    };
    if !gone(tree) || main.alive() {
        return None;
    }
    let next = match stop.then {
        Then::Down => Life::Stopped,
        Then::Wait => Life::Waiting,
        Then::Hold => Life::Held,
        Then::Remove => Life::Removed,
        Then::Decide(_) => Life::Exited,
    };
    let Life::Stopping { main, stop } = std::mem::replace(life, next) else {
        return None;
    };
    let Tree::Signalled(tree) = stop.tree else {
        return None;
    };
    Some(Finished {
        main,
        cause: stop.cause,
        then: stop.then,
        tree,
        pending: stop.pending,
    })
}

/// Applies the restart policy after the service's program ended.
pub(crate) fn decide<S>(
    life: &mut Life<S>,
    policy: Policy<'_>,
    ending: Ending,
    uptime: Duration,
    reason: &str,
    now: Instant,
) -> Vec<Effect> {
    if policy.shutting_down {
        *life = Life::Stopped;
        return Vec::new();
    }
    let cfg = policy.cfg;
    if !policy::wants_restart(cfg.restart, ending) {
        *life = if ending == Ending::StartFailed {
            Life::Failed
        } else {
            Life::Exited
        };
        return critical_end(cfg, ending);
    }
    match policy
        .restarts
        .decide(&cfg.backoff, &cfg.max_restarts, uptime, now, policy.random)
    {
        Decision::Restart { delay, attempt } => {
            let mut effects = vec![
                Effect::Emit(Event::Restarting {
                    in_ms: millis(delay),
                    attempt,
                    reason: reason.to_owned(),
                }),
                Effect::RestartDependents,
            ];
            if delay.is_zero() {
                *life = Life::Waiting;
                effects.push(Effect::Start);
            } else {
                *life = Life::Backoff { until: now + delay };
            }
            effects
        }
        Decision::GiveUp { restarts } => {
            *life = Life::Failed;
            let mut effects = vec![Effect::Emit(Event::GaveUp {
                restarts,
                within_ms: millis(cfg.max_restarts.within),
                action: match cfg.on_give_up {
                    OnGiveUp::StayDown => "stay-down",
                    OnGiveUp::Shutdown => "shutdown",
                }
                .to_owned(),
            })];
            // A critical service's status is the supervisor's: its shutdown comes first.
            effects.extend(critical_end(cfg, ending));
            if cfg.on_give_up == OnGiveUp::Shutdown {
                effects.push(Effect::Shutdown {
                    reason: format!("{} gave up", cfg.name),
                    exit_code: 1,
                });
            }
            effects
        }
    }
}

/// A `critical` service ended for good: the supervisor shuts down with its status.
fn critical_end(cfg: &Service, ending: Ending) -> Vec<Effect> {
    if !cfg.critical {
        return Vec::new();
    }
    let exit_code = match ending {
        Ending::Exited(status) => status.shell_code(),
        Ending::Stopped => exit_code::STALLED,
        Ending::StartFailed => 1,
    };
    vec![Effect::Shutdown {
        reason: format!("{} ended and is critical", cfg.name),
        exit_code,
    }]
}

/// The shutdown began: what waits or backs off will not start, and nothing running is watched
/// for stalls any more (each is stopped in dependency order).
pub(crate) fn shutdown_begins<S>(life: &mut Life<S>) {
    match life {
        Life::Waiting | Life::Backoff { .. } => *life = Life::Stopped,
        Life::Starting {
            watch, ready_probe, ..
        } => {
            *watch = Watch::default();
            *ready_probe = None;
        }
        Life::Ready { watch, .. } => *watch = Watch::default(),
        _ => {}
    }
}

/// A reload changed (`pending`, then [`Then::Wait`]) or removed ([`Then::Remove`]) the service:
/// its running program is stopped, a stop under way is redirected, and a service that does
/// not run takes the change at once (the caller applies `pending` then).
pub(crate) fn retire<S>(
    life: &mut Life<S>,
    then: Then,
    pending: Option<Box<Service>>,
    now: Instant,
) -> (Vec<Effect>, Option<Box<Service>>) {
    if matches!(
        life,
        Life::Starting { .. } | Life::Ready { .. } | Life::Diagnosing { .. }
    ) {
        let effects = stop(life, StopCause::Reload, then, now);
        if let Some(stop) = life.stop_mut() {
            stop.pending = pending;
        }
        return (effects, None);
    }
    if let Some(stop) = life.stop_mut() {
        stop.then = then;
        stop.pending = pending;
        return (Vec::new(), None);
    }
    if then == Then::Remove {
        *life = Life::Removed;
    }
    (Vec::new(), pending)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use hangwatch_config::{Backoff, MaxRestarts, RestartPolicy};
    use hangwatch_process::ProcessId;

    use super::*;

    /// The stop handle of these tests: whether its tree is gone.
    #[derive(Debug, PartialEq)]
    struct FakeTree {
        gone: bool,
    }

    fn main_at(started: Instant) -> Main {
        Main {
            id: ProcessId {
                pid: 4242,
                start_time: 1,
            },
            pgid: 4242,
            started,
            marker: b"HANGWATCH_ID=test/svc/1".to_vec(),
            status: None,
        }
    }

    fn starting(now: Instant) -> Life<FakeTree> {
        Life::Starting {
            main: main_at(now),
            watch: Watch::default(),
            ready_probe: None,
        }
    }

    fn service(restart: RestartPolicy, count: u32, on_give_up: OnGiveUp) -> Service {
        let mut cfg = hangwatch_config::Config::parse(
            "[service.svc]\ncommand = \"true\"\n",
            std::path::Path::new("/tmp/hangwatch.toml"),
        )
        .expect("config")
        .services
        .remove(0);
        cfg.restart = restart;
        cfg.backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..cfg.backoff
        };
        cfg.max_restarts = MaxRestarts {
            count,
            within: Duration::from_secs(60),
        };
        cfg.on_give_up = on_give_up;
        cfg
    }

    fn emitted(effects: &[Effect]) -> Vec<&Event> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Emit(event) => Some(event),
                _ => None,
            })
            .collect()
    }

    /// Signals the due stop as the loop would, with a tree that is gone once `gone` is set.
    fn signal(life: &mut Life<FakeTree>) {
        assert!(matches!(
            life.stop().map(|s| &s.tree),
            Some(Tree::Due { .. })
        ));
        signalled(life, FakeTree { gone: false });
    }

    fn tree_gone(life: &mut Life<FakeTree>) {
        if let Some(tree) = life.tree_mut() {
            tree.gone = true;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_during_start_is_diagnosed_then_stopped() {
        let now = Instant::now();
        let mut life = starting(now);
        let effects = stalled(&mut life, StopCause::Stall, true, false, now);
        assert_eq!(effects, vec![Effect::Diagnose { pid: 4242 }]);
        assert!(matches!(
            life,
            Life::Diagnosing {
                cause: StopCause::Stall,
                ..
            }
        ));
        assert!(
            life.watch().is_none(),
            "no detector outlives the run it watched"
        );
        let effects = diagnosed(&mut life, now);
        assert_eq!(effects, vec![Effect::SignalTree]);
        let stop = life.stop().expect("stopping");
        assert_eq!(stop.cause, StopCause::Stall);
        assert_eq!(stop.then, Then::Decide(Ending::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_whose_diagnosis_began_early_only_awaits_it() {
        let now = Instant::now();
        let mut life = starting(now);
        let effects = stalled(&mut life, StopCause::Stall, true, true, now);
        assert!(effects.is_empty(), "no second diagnosis: {effects:?}");
        assert!(matches!(life, Life::Diagnosing { .. }));
        assert_eq!(diagnosed(&mut life, now), vec![Effect::SignalTree]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_without_diagnosis_stops_at_once() {
        let now = Instant::now();
        let mut life = starting(now);
        let effects = stalled(&mut life, StopCause::Memory, false, false, now);
        assert_eq!(effects, vec![Effect::SignalTree]);
        assert_eq!(life.stop().map(|s| s.cause), Some(StopCause::Memory));
    }

    #[tokio::test(start_paused = true)]
    async fn an_exit_during_the_diagnosis_waits_for_it_then_the_stop_finishes() {
        let now = Instant::now();
        let mut life = starting(now);
        stalled(&mut life, StopCause::Stall, true, false, now);
        let effects = exited(&mut life, ExitStatus::Exited(3), None, now);
        assert!(
            effects.is_empty(),
            "the diagnosis's end decides, not the exit"
        );
        assert!(matches!(life, Life::Diagnosing { .. }));
        assert!(life.live_main().is_none());
        diagnosed(&mut life, now);
        signal(&mut life);
        assert!(
            finish_stop(&mut life, |t| t.gone).is_none(),
            "tree still there"
        );
        tree_gone(&mut life);
        let finished = finish_stop(&mut life, |t| t.gone).expect("finished");
        assert_eq!(finished.cause, StopCause::Stall);
        assert_eq!(finished.main.status, Some(ExitStatus::Exited(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_exit_stops_what_the_program_left_then_decides() {
        let now = Instant::now();
        let mut life = starting(now);
        tokio::time::advance(Duration::from_secs(2)).await;
        let later = Instant::now();
        let effects = exited(&mut life, ExitStatus::Exited(1), None, later);
        assert!(matches!(
            effects.as_slice(),
            [
                Effect::LastExit { .. },
                Effect::Emit(Event::Exited { stopped: false, .. }),
                Effect::SignalTree
            ]
        ));
        assert_eq!(life.stop().map(|s| s.cause), Some(StopCause::Leftovers));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_that_fails_stays_due_and_is_retried() {
        let now = Instant::now();
        let mut life = starting(now);
        stalled(&mut life, StopCause::Stall, false, false, now);
        let effects = signal_failed(&mut life, "no scan".to_owned(), now);
        assert!(matches!(
            emitted(&effects).as_slice(),
            [Event::StopFailed {
                cause: StopCause::Stall,
                ..
            }]
        ));
        match life.stop().map(|s| &s.tree) {
            Some(Tree::Due { at }) => assert_eq!(*at, now + STOP_RETRY),
            other => panic!("not due again: {other:?}"),
        }
        // Still the service's stop: it keeps its program and cannot be lost.
        assert!(life.live_main().is_some());
        tokio::time::advance(STOP_RETRY).await;
        signal(&mut life);
        tree_gone(&mut life);
        exited(&mut life, ExitStatus::Exited(0), None, now);
        assert!(finish_stop(&mut life, |t| t.gone).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_in_the_middle_of_a_stop_waits_for_it() {
        let now = Instant::now();
        let mut life = starting(now);
        stalled(&mut life, StopCause::Stall, false, false, now);
        signal(&mut life);
        let new = Box::new(service(RestartPolicy::Always, 5, OnGiveUp::StayDown));
        let (effects, left) = retire(&mut life, Then::Wait, Some(new), now);
        assert!(effects.is_empty(), "the stop under way goes on");
        assert!(left.is_none(), "the definition waits inside the stop");
        exited(&mut life, ExitStatus::Exited(0), None, now);
        tree_gone(&mut life);
        let finished = finish_stop(&mut life, |t| t.gone).expect("finished");
        assert!(finished.pending.is_some());
        assert_eq!(finished.then, Then::Wait);
        assert!(matches!(life, Life::Waiting));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_of_a_service_that_does_not_run_applies_at_once() {
        let now = Instant::now();
        let mut life: Life<FakeTree> = Life::Backoff { until: now };
        let new = Box::new(service(RestartPolicy::Always, 5, OnGiveUp::StayDown));
        let (effects, left) = retire(&mut life, Then::Wait, Some(new), now);
        assert!(effects.is_empty());
        assert!(left.is_some(), "handed back to apply now");
        let (_, _) = retire(&mut life, Then::Remove, None, now);
        assert!(matches!(life, Life::Removed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dependency_restart_stops_the_dependent_until_it_is_ready_again() {
        let now = Instant::now();
        let cfg = service(RestartPolicy::Always, 5, OnGiveUp::StayDown);
        let mut restarts = Restarts::default();
        // The dependency ended and restarts: its dependents are told to stop.
        let mut dependency = starting(now);
        let effects = decide(
            &mut dependency,
            Policy {
                cfg: &cfg,
                restarts: &mut restarts,
                shutting_down: false,
                random: 0.0,
            },
            Ending::Exited(ExitStatus::Exited(1)),
            Duration::from_secs(1),
            "exited",
            now,
        );
        assert!(effects.contains(&Effect::RestartDependents));
        assert!(matches!(dependency, Life::Backoff { .. }));
        // The dependent stops, then waits for its dependency.
        let mut dependent = starting(now);
        let effects = stop(&mut dependent, StopCause::Dependency, Then::Wait, now);
        assert_eq!(effects, vec![Effect::SignalTree]);
        signal(&mut dependent);
        exited(
            &mut dependent,
            ExitStatus::Signalled {
                signal: 15,
                core_dumped: false,
            },
            None,
            now,
        );
        tree_gone(&mut dependent);
        finish_stop(&mut dependent, |t| t.gone).expect("finished");
        assert!(matches!(dependent, Life::Waiting));
    }

    #[tokio::test(start_paused = true)]
    async fn too_many_restarts_give_up_and_may_shut_down() {
        let now = Instant::now();
        let cfg = service(RestartPolicy::Always, 1, OnGiveUp::Shutdown);
        let mut restarts = Restarts::default();
        let mut life: Life<FakeTree> = Life::Exited;
        let mut decide_once = |life: &mut Life<FakeTree>| {
            decide(
                life,
                Policy {
                    cfg: &cfg,
                    restarts: &mut restarts,
                    shutting_down: false,
                    random: 0.0,
                },
                Ending::Stopped,
                Duration::ZERO,
                "stalled",
                now,
            )
        };
        let first = decide_once(&mut life);
        assert!(matches!(life, Life::Backoff { .. }), "{first:?}");
        let second = decide_once(&mut life);
        assert!(matches!(life, Life::Failed));
        assert!(matches!(
            emitted(&second).as_slice(),
            [Event::GaveUp { restarts: 1, .. }]
        ));
        assert!(
            second
                .iter()
                .any(|e| matches!(e, Effect::Shutdown { exit_code: 1, .. }))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_critical_service_that_ends_for_good_shuts_down_with_its_status() {
        let now = Instant::now();
        let mut cfg = service(RestartPolicy::Never, 5, OnGiveUp::StayDown);
        cfg.critical = true;
        let mut restarts = Restarts::default();
        let mut life = starting(now);
        let effects = decide(
            &mut life,
            Policy {
                cfg: &cfg,
                restarts: &mut restarts,
                shutting_down: false,
                random: 0.0,
            },
            Ending::Exited(ExitStatus::Exited(3)),
            Duration::ZERO,
            "exited",
            now,
        );
        assert!(matches!(life, Life::Exited));
        assert!(matches!(
            effects.as_slice(),
            [Effect::Shutdown { exit_code: 3, .. }]
        ));
        // Restarted: not the end, nothing happens.
        let mut cfg = service(RestartPolicy::Always, 1, OnGiveUp::Shutdown);
        cfg.critical = true;
        let mut life = starting(now);
        let mut restarts = Restarts::default();
        let mut once = |life: &mut Life<FakeTree>| {
            decide(
                life,
                Policy {
                    cfg: &cfg,
                    restarts: &mut restarts,
                    shutting_down: false,
                    random: 0.0,
                },
                Ending::Exited(ExitStatus::Signalled {
                    signal: 9,
                    core_dumped: false,
                }),
                Duration::ZERO,
                "exited",
                now,
            )
        };
        let first = once(&mut life);
        assert!(!first.iter().any(|e| matches!(e, Effect::Shutdown { .. })));
        // Gave up: the critical status (128 + 9) comes before on_give_up's 1.
        let second = once(&mut life);
        let codes: Vec<i32> = second
            .iter()
            .filter_map(|e| match e {
                Effect::Shutdown { exit_code, .. } => Some(*exit_code),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![137, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_during_a_backoff_keeps_it_down() {
        let now = Instant::now();
        let mut life: Life<FakeTree> = Life::Backoff {
            until: now + Duration::from_secs(5),
        };
        shutdown_begins(&mut life);
        assert!(matches!(life, Life::Stopped));
        // And an ending during the shutdown restarts nothing.
        let cfg = service(RestartPolicy::Always, 5, OnGiveUp::StayDown);
        let mut restarts = Restarts::default();
        let mut life = starting(now);
        let effects = decide(
            &mut life,
            Policy {
                cfg: &cfg,
                restarts: &mut restarts,
                shutting_down: true,
                random: 0.0,
            },
            Ending::Exited(ExitStatus::Exited(1)),
            Duration::ZERO,
            "exited",
            now,
        );
        assert!(effects.is_empty());
        assert!(matches!(life, Life::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_stop_is_not_redirected() {
        let now = Instant::now();
        let mut life = starting(now);
        stop(&mut life, StopCause::Shutdown, Then::Down, now);
        redirect(&mut life, Then::Hold);
        assert_eq!(life.stop().map(|s| s.then), Some(Then::Down));
        let mut life = starting(now);
        stop(&mut life, StopCause::Request, Then::Hold, now);
        redirect(&mut life, Then::Wait);
        assert_eq!(life.stop().map(|s| s.then), Some(Then::Wait));
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_starts_the_liveness_probe_and_a_second_ready_is_nothing() {
        let now = Instant::now();
        let mut life = starting(now);
        tokio::time::advance(Duration::from_millis(250)).await;
        let later = Instant::now();
        let effects = ready(&mut life, "notify", None, later);
        assert!(matches!(
            emitted(&effects).as_slice(),
            [Event::Ready { after_ms, .. }] if (*after_ms - 250.0).abs() < 1.0
        ));
        assert!(life.is_ready());
        assert!(ready(&mut life, "notify", None, later).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_under_pressure_waits_rechecks_and_stops_by_its_bound() {
        let deadline = Instant::now();
        let defer = StallDefer {
            up_to: Duration::from_secs(5),
            above_pct: 20.0,
        };
        let busy = Some(Pressure {
            cpu: Some(90.0),
            memory: Some(0.0),
        });
        let mut deferral = None;
        // At the deadline, under pressure: the stop waits, once said.
        let call = stall_due(
            &mut deferral,
            Some(&defer),
            StallSource::Notify,
            deadline,
            busy,
            deadline,
        );
        let StallCall::Wait(effects) = call else {
            panic!("not deferred: {call:?}")
        };
        assert!(matches!(
            emitted(&effects).as_slice(),
            [Event::StallDeferred {
                cpu_pct: Some(90.0),
                up_to_ms: 5000,
                ..
            }]
        ));
        let d = deferral.expect("a deferral");
        assert_eq!(d.recheck, deadline + DEFER_RECHECK);
        assert_eq!(d.until, deadline + Duration::from_secs(5));
        // Rechecks under pressure: quiet, and never past the bound.
        tokio::time::advance(DEFER_RECHECK * 2).await;
        let call = stall_due(
            &mut deferral,
            Some(&defer),
            StallSource::Notify,
            deadline,
            busy,
            Instant::now(),
        );
        assert_eq!(call, StallCall::Wait(Vec::new()));
        assert_eq!(
            deferral.map(|d| d.recheck),
            Some(deadline + Duration::from_secs(5))
        );
        // At the bound: the stall proceeds, saying how long it waited.
        tokio::time::advance(Duration::from_secs(1)).await;
        let call = stall_due(
            &mut deferral,
            Some(&defer),
            StallSource::Notify,
            deadline,
            busy,
            Instant::now(),
        );
        let StallCall::Stop {
            deferred: Some(waited),
        } = call
        else {
            panic!("no stop at the bound: {call:?}")
        };
        assert!(waited.bound_reached);
        assert!((waited.for_ms - 5000.0).abs() < 1.0);
        assert!((waited.peak_pct - 90.0).abs() < 1e-9);
        assert!(deferral.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_clears_a_deferred_stall_and_low_pressure_or_no_option_stop_at_once() {
        let deadline = Instant::now();
        let defer = StallDefer {
            up_to: Duration::from_secs(30),
            above_pct: 20.0,
        };
        let busy = Some(Pressure {
            cpu: None,
            memory: Some(40.0),
        });
        let mut deferral = None;
        stall_due(
            &mut deferral,
            Some(&defer),
            StallSource::File,
            deadline,
            busy,
            deadline,
        );
        assert!(deferral.is_some());
        // The deadline as it stands has not moved: nothing.
        assert!(deferral_cleared(&mut deferral, Some(deadline), deadline).is_empty());
        tokio::time::advance(Duration::from_millis(1500)).await;
        let now = Instant::now();
        let effects = deferral_cleared(&mut deferral, Some(now + Duration::from_secs(1)), now);
        assert!(matches!(
            emitted(&effects).as_slice(),
            [Event::StallCleared { source: StallSource::File, deferred_ms }] if (*deferred_ms - 1500.0).abs() < 1.0
        ));
        assert!(deferral.is_none());
        // Pressure below the threshold: at once, and not said to be deferred.
        let calm = Some(Pressure {
            cpu: Some(19.9),
            memory: Some(0.0),
        });
        let call = stall_due(
            &mut deferral,
            Some(&defer),
            StallSource::Notify,
            deadline,
            calm,
            now,
        );
        assert_eq!(call, StallCall::Stop { deferred: None });
        // No pressure information, no option, or a source the program raised: at once.
        for (defer, source, pressure) in [
            (Some(&defer), StallSource::Notify, None),
            (None, StallSource::Notify, busy),
            (Some(&defer), StallSource::Trigger, busy),
            (Some(&defer), StallSource::Stopping, busy),
        ] {
            let call = stall_due(&mut deferral, defer, source, deadline, pressure, now);
            assert_eq!(call, StallCall::Stop { deferred: None }, "{source:?}");
            assert!(deferral.is_none());
        }
        // A threshold of 0 % takes any reading, even an idle host's.
        let any = StallDefer {
            up_to: Duration::from_secs(1),
            above_pct: 0.0,
        };
        let idle = Some(Pressure {
            cpu: Some(0.0),
            memory: Some(0.0),
        });
        let call = stall_due(
            &mut deferral,
            Some(&any),
            StallSource::Output,
            now,
            idle,
            now,
        );
        assert!(matches!(call, StallCall::Wait(_)));
    }
}
