//! Every seed through its target's body, without libFuzzer: the targets still compile against
//! the parsers, and no seed fails. `.ci/run` runs this; fuzzing proper is `fuzz/run`.

use std::path::Path;

/// A target's name (its seed directory) and its body.
type Target = (&'static str, fn(&[u8]));

#[test]
fn every_seed_passes_its_target() {
    let targets: [Target; 9] = [
        ("config", hangwatch_fuzz::config),
        ("values", hangwatch_fuzz::values),
        ("notify", hangwatch_fuzz::notify),
        ("control", hangwatch_fuzz::control),
        ("proc_stat", hangwatch_fuzz::proc_stat),
        ("proc_status", hangwatch_fuzz::proc_status),
        ("proc_maps", hangwatch_fuzz::proc_maps),
        ("proc_fdinfo", hangwatch_fuzz::proc_fdinfo),
        ("proc_net", hangwatch_fuzz::proc_net),
    ];
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (target, run) in targets {
        let mut count = 0;
        for entry in std::fs::read_dir(seeds.join(target)).expect("seed directory") {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read seed");
            eprintln!("{target}: {}", path.display());
            run(&data);
            count += 1;
        }
        assert!(count > 0, "no seed for {target}");
    }
}
