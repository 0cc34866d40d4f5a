//! Start order: services grouped into dependency levels.

use crate::model::Config;

impl Config {
    /// The services in start order, grouped by level: level 0 has no dependencies, and every
    /// service of level N depends on at least one of level N-1 and on nothing at N or later. The
    /// services of one level may start in parallel once the level before is ready; shutdown walks
    /// the levels backwards. Within a level, file order.
    ///
    /// A loaded config has no cycles and no unknown names. On a hand-built one, unknown names are
    /// ignored and services caught in a cycle end up together in one last level, so this always
    /// returns every service once.
    #[must_use]
    pub fn start_levels(&self) -> Vec<Vec<String>> {
        let mut level: Vec<Option<usize>> = vec![None; self.services.len()];
        let index_of = |name: &str| self.services.iter().position(|s| s.name == name);
        let deps: Vec<Vec<usize>> = self
            .services
            .iter()
            .map(|s| {
                s.depends_on
                    .iter()
                    .filter_map(|d| index_of(d))
                    .filter(|&j| self.services[j].name != s.name)
                    .collect()
            })
            .collect();
        // Each pass settles every service whose dependencies are all settled; a pass that
        // settles nothing means the rest are in a cycle. At most one pass per service.
        loop {
            let mut progress = false;
            for i in 0..self.services.len() {
                if level[i].is_some() {
                    continue;
                }
                let settled: Option<Vec<usize>> = deps[i].iter().map(|&j| level[j]).collect();
                if let Some(levels) = settled {
                    level[i] = Some(levels.into_iter().max().map_or(0, |max| max + 1));
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        let depth = level.iter().flatten().max().map_or(0, |max| max + 1);
        let mut levels = vec![Vec::new(); depth];
        let mut stuck = Vec::new();
        for (service, level) in self.services.iter().zip(&level) {
            match level {
                Some(n) => levels[*n].push(service.name.clone()),
                None => stuck.push(service.name.clone()),
            }
        }
        if !stuck.is_empty() {
            levels.push(stuck);
        }
        levels
    }
}
