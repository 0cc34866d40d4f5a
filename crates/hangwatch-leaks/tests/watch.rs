//! The leak watch against real processes, in a directory of its own on the tmpfs of
//! `/dev/shm` (so that other programs' objects cannot mix in): both sides of attribution.
//!
//! The tree is this test process's children, so tests that spawn take a lock and run one at a
//! time. Every wait has a deadline; every child is killed and reaped; the directory is removed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_leaks::{LeakPolicy, LeakWatch};
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
        let mut child = Command::new("sh")
            .args(["-c", r#"exec 3<>"$1" && echo ready && read _ignored"#, "sh"])
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
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
