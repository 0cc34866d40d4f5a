//! The leak watch against real processes, in a directory of its own on the tmpfs of
//! `/dev/shm` (so that other programs' objects cannot mix in): both sides of attribution.
//!
//! The tree is this test process's children, so tests that spawn take a lock and run one at a
//! time. Every wait has a deadline; every child is killed and reaped; the directory is removed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_leaks::{LeakPolicy, LeakReport, LeakWatch, Part};
use hangwatch_process::ProcessId;
use hangwatch_protocol::report::{Attribution, LeakAction, LeakKind};

/// One spawning test at a time: the tree is every child of this process.
static TREE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DEADLINE: Duration = Duration::from_secs(10);

/// A directory of this test on the tmpfs of `/dev/shm`, removed on drop.
struct ShmScratch(PathBuf);

impl ShmScratch {
    fn new(name: &str) -> Option<ShmScratch> {
        let path = Path::new("/dev/shm").join(format!(
            "hangwatch-leaks-test-{name}-{}",
            std::process::id()
        ));
        match std::fs::create_dir(&path) {
            Ok(()) => Some(ShmScratch(path)),
            // No /dev/shm on this machine: nothing to test.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => panic!("create {}: {err}", path.display()),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ShmScratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A shell of this test's tree that opens `path` (creating it if needed), holds it open, says
/// `ready`, and waits for its stdin to close.
struct Holder {
    child: Child,
}

impl Holder {
    fn start(path: &Path) -> Holder {
        Holder::spawn(path, false)
    }

    /// A holder that leads a process group of its own, as a service's program does.
    fn leader(path: &Path) -> Holder {
        Holder::spawn(path, true)
    }

    fn spawn(path: &Path, leader: bool) -> Holder {
        let mut command = Command::new("sh");
        command
            .args(["-c", r#"exec 3<>"$1" && echo ready && read _ignored"#, "sh"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if leader {
            command.process_group(0);
        }
        let mut child = command.spawn().expect("spawn sh");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut holder = Holder { child };
        match rx.recv_timeout(DEADLINE) {
            Ok(line) if line.starts_with("ready") => holder,
            other => {
                holder.stop();
                panic!("holder not ready: {other:?}");
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The part of the tree this holder leads.
    fn part(&self) -> Part {
        let id = ProcessId::of(self.pid())
            .expect("read the holder's stat")
            .expect("the holder is alive");
        Part::program(id, self.pid())
    }

    fn stop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lets the watcher task run until it has taken `looks` looks.
async fn wait_for_looks(watch: &LeakWatch, looks: u64) {
    let deadline = Instant::now() + DEADLINE;
    while watch.looks() < looks {
        assert!(
            Instant::now() < deadline,
            "no look at the tree within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[tokio::test]
async fn an_object_the_tree_created_is_attributable_and_cleaned() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("created") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let object = dir.file("psm_created");
    let mut holder = Holder::start(&object);
    wait_for_looks(&watch, 1).await;
    watch.observe();
    holder.stop();

    let report = watch.finish(LeakPolicy::Clean, 0);
    assert!(report.leaked, "{report:#?}");
    let found = report
        .objects
        .iter()
        .find(|o| o.name == object.display().to_string())
        .unwrap_or_else(|| panic!("not listed: {report:#?}"));
    assert_eq!(found.kind, LeakKind::PosixSharedMemory);
    assert_eq!(found.attribution, Attribution::Attributable, "{found:#?}");
    assert!(
        found.evidence.contains("right after it was created"),
        "{found:#?}"
    );
    assert_eq!(found.process.as_ref().map(|p| p.pid), Some(holder.pid()));
    assert_eq!(found.action, LeakAction::Removed);
    assert!(!object.exists(), "clean left {}", object.display());
}

#[tokio::test]
async fn report_policy_lists_without_removing() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("report") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let object = dir.file("sem.reported");
    let mut holder = Holder::start(&object);
    wait_for_looks(&watch, 1).await;
    holder.stop();

    let report = watch.finish(LeakPolicy::Report, 0);
    let found = report
        .objects
        .iter()
        .find(|o| o.name == object.display().to_string())
        .unwrap_or_else(|| panic!("not listed: {report:#?}"));
    assert_eq!(found.kind, LeakKind::PosixSemaphore);
    assert_eq!(found.attribution, Attribution::Attributable);
    assert_eq!(found.action, LeakAction::Reported);
    assert!(object.exists());
}

#[tokio::test]
async fn an_object_that_existed_before_is_never_listed_or_touched() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("before") else {
        return;
    };
    let object = dir.file("psm_before");
    std::fs::write(&object, [0u8; 64]).expect("create");
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let mut holder = Holder::start(&object);
    watch.observe();
    holder.stop();

    let report = watch.finish(LeakPolicy::Clean, 0);
    assert!(!report.leaked, "{report:#?}");
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.name != object.display().to_string()),
        "{report:#?}"
    );
    assert!(object.exists(), "a pre-existing object was removed");
}

#[tokio::test]
async fn an_object_someone_else_created_is_only_suspected_even_when_the_tree_held_it() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("other") else {
        return;
    };
    // The tree must be alive for the look at the creation to mean anything.
    let mut bystander = Holder::start(&dir.file("bystander"));
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    // Created by this test process, which is not part of its own tree, and kept open.
    let object = dir.file("psm_other");
    let outsider = std::fs::File::create(&object).expect("create");
    let looks = watch.looks();
    wait_for_looks(&watch, looks + 1).await;
    let mut holder = Holder::start(&object);
    watch.observe();
    holder.stop();
    bystander.stop();

    let report = watch.finish(LeakPolicy::Clean, 0);
    let found = report
        .objects
        .iter()
        .find(|o| o.name == object.display().to_string())
        .unwrap_or_else(|| panic!("not listed: {report:#?}"));
    assert_eq!(found.attribution, Attribution::Suspected, "{found:#?}");
    assert!(
        found.evidence.contains("outside the program's tree"),
        "{found:#?}"
    );
    assert_eq!(found.action, LeakAction::Reported);
    assert!(object.exists(), "someone else's object was removed");

    // Released by its creator too, it stays in doubt: nobody of the tree held it at creation.
    drop(outsider);
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let mut bystander = Holder::start(&dir.file("bystander2"));
    let late = dir.file("psm_late");
    std::fs::write(&late, [0u8; 8]).expect("create");
    let looks = watch.looks();
    wait_for_looks(&watch, looks + 1).await;
    let mut holder = Holder::start(&late);
    watch.observe();
    holder.stop();
    bystander.stop();
    let report = watch.finish(LeakPolicy::Clean, 0);
    let found = report
        .objects
        .iter()
        .find(|o| o.name == late.display().to_string())
        .unwrap_or_else(|| panic!("not listed: {report:#?}"));
    assert_eq!(found.attribution, Attribution::Suspected, "{found:#?}");
    assert!(found.evidence.contains("another program"), "{found:#?}");
    assert!(late.exists());
}

#[tokio::test]
async fn an_object_nothing_links_to_the_tree_is_only_counted() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("stranger") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let object = dir.file("psm_stranger");
    std::fs::write(&object, [0u8; 8]).expect("create");
    watch.observe();
    let report = watch.finish(LeakPolicy::Clean, 0);
    assert!(!report.leaked);
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.name != object.display().to_string()),
        "{report:#?}"
    );
    assert!(report.unattributed >= 1, "{report:#?}");
    assert!(object.exists());
}

#[tokio::test]
async fn leftover_processes_alone_make_a_leak() {
    let Some(dir) = ShmScratch::new("leftovers") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let report = watch.finish(LeakPolicy::Fail, 2);
    assert!(report.leaked);
    assert_eq!(hangwatch_leaks::exit_code(&report, 0), 123);
}

/// A part's whole audit, the judging step timed.
fn audit_part(watch: &LeakWatch, part: &Part) -> Option<(LeakReport, Duration)> {
    let audit = watch.audit_part(part)?;
    let found = audit.run();
    let took = found.took();
    Some((watch.reported(found), took))
}

fn names(report: &LeakReport) -> Vec<String> {
    report.objects.iter().map(|o| o.name.clone()).collect()
}

#[tokio::test]
async fn a_part_audit_reports_the_objects_of_that_part_alone_and_once() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("part") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let (first, second) = (dir.file("psm_first"), dir.file("sem.second"));
    let mut a = Holder::leader(&first);
    let mut b = Holder::leader(&second);
    wait_for_looks(&watch, 1).await;
    watch.observe();
    let part = a.part();
    a.stop();

    let (report, took) = audit_part(&watch, &part).expect("the part made an object");
    eprintln!("audit of a part that left one object: {took:?}");
    assert_eq!(
        names(&report),
        vec![first.display().to_string()],
        "{report:#?}"
    );
    let found = &report.objects[0];
    assert_eq!(found.attribution, Attribution::Attributable, "{found:#?}");
    assert_eq!(found.action, LeakAction::Reported);
    assert_eq!(found.process.as_ref().map(|p| p.pid), Some(a.pid()));
    assert!(report.leaked);
    assert!(first.exists(), "a part's audit removed {}", first.display());
    // Once: neither the part again nor the final audit lists it.
    assert!(watch.audit_part(&part).is_none());

    b.stop();
    let report = watch.finish(LeakPolicy::Report, 0);
    assert_eq!(
        names(&report),
        vec![second.display().to_string()],
        "{report:#?}"
    );
}

#[tokio::test]
async fn objects_of_two_parts_or_still_held_are_left_to_the_final_audit() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("parts") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    // Made by one part, held by another too.
    let shared = dir.file("psm_shared");
    let mut a = Holder::leader(&shared);
    wait_for_looks(&watch, 1).await;
    let mut b = Holder::leader(&shared);
    // Made by a third, held by this test (outside the tree) when the part is gone.
    let kept = dir.file("psm_kept");
    let looks = watch.looks();
    let mut c = Holder::leader(&kept);
    wait_for_looks(&watch, looks + 1).await;
    let outsider = std::fs::File::open(&kept).expect("open");
    watch.observe();
    let parts = [a.part(), b.part(), c.part()];
    a.stop();
    b.stop();
    c.stop();

    assert!(
        watch.audit_part(&parts[0]).is_none(),
        "{:#?}",
        watch.audit_part(&parts[0])
    );
    assert!(watch.audit_part(&parts[1]).is_none());
    let (report, _) = audit_part(&watch, &parts[2]).expect("c made an object");
    assert!(report.objects.is_empty(), "still held: {report:#?}");

    let report = watch.finish(LeakPolicy::Report, 0);
    let listed = names(&report);
    for path in [&shared, &kept] {
        assert!(
            listed.contains(&path.display().to_string()),
            "{}: {report:#?}",
            path.display()
        );
    }
    drop(outsider);
}

#[tokio::test]
async fn a_part_that_made_nothing_costs_next_to_nothing() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("nothing") else {
        return;
    };
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    // Another part's object, so that the evidence is not empty.
    let mut other = Holder::leader(&dir.file("psm_other"));
    wait_for_looks(&watch, 1).await;
    let elsewhere =
        std::env::temp_dir().join(format!("hangwatch-leaks-part-{}", std::process::id()));
    let mut idle = Holder::leader(&elsewhere);
    watch.observe();
    let part = idle.part();
    idle.stop();
    let _ = std::fs::remove_file(&elsewhere);

    const ROUNDS: u32 = 200;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        assert!(watch.audit_part(&part).is_none());
    }
    let each = started.elapsed() / ROUNDS;
    eprintln!("audit of a part that made nothing: {each:?}");
    // An order of magnitude above what it takes, for slow machines: it reads one small /proc
    // file and looks through the evidence in memory.
    assert!(each < Duration::from_millis(5), "{each:?}");
    other.stop();
}

/// Removes a SysV segment on drop.
struct Segment(i32);

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = hangwatch_process::ipc::remove_sysv_shm(self.0);
    }
}

#[tokio::test]
async fn a_sysv_segment_a_part_made_and_abandoned_is_reported_with_it_once() {
    let _tree = TREE.lock().await;
    let Some(dir) = ShmScratch::new("sysv") else {
        return;
    };
    if !Path::new("/proc/sysvipc/shm").exists() {
        return;
    }
    let watch = LeakWatch::start_in(&dir.0, std::process::id() as i32, own_uid());
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys\n\
             libc = ctypes.CDLL(None, use_errno=True)\n\
             print('ready', libc.shmget(0, 4096, 0o1600), flush=True)\n\
             sys.stdin.readline()\n",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn python3");
    let pid = child.id() as i32;
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let part = ProcessId::of(pid)
        .ok()
        .flatten()
        .map(|id| Part::program(id, pid));
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    read.expect("read the segment's id");
    let id: i32 = line
        .strip_prefix("ready ")
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a segment: {line:?}"));
    let _segment = Segment(id);
    assert!(id >= 0, "shmget failed");
    let part = part.expect("the child was alive");

    let (report, _) = audit_part(&watch, &part).expect("the part made a segment");
    let prefix = format!("shmid {id} ");
    let found = report
        .objects
        .iter()
        .find(|o| o.name.starts_with(&prefix))
        .unwrap_or_else(|| panic!("segment {id} not listed: {report:#?}"));
    assert_eq!(found.kind, LeakKind::SysvSharedMemory);
    assert_eq!(found.attribution, Attribution::Attributable);
    assert!(found.evidence.contains(&pid.to_string()), "{found:#?}");
    assert!(watch.audit_part(&part).is_none());
    let report = watch.finish(LeakPolicy::Report, 0);
    assert!(
        report.objects.iter().all(|o| !o.name.starts_with(&prefix)),
        "reported again: {report:#?}"
    );
}
