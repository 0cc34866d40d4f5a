//! `hangwatch incidents [--json]` and `hangwatch incidents show [ID] [--json]`: the diagnoses
//! kept in the state directory before stalled services were stopped. Reading them is the state
//! directory's ([`hangwatch_supervisor::state::read::incidents`]); this module prints.

use std::io::Write;
use std::path::Path;

use hangwatch_supervisor::state::INCIDENTS_DIR;
use hangwatch_supervisor::state::read::incidents::{Incident, find, list, report};

use crate::cli::{IncidentsArgs, IncidentsCommand};
use crate::commands::out;
use crate::commands::target::Target;

/// Prints the list or one incident; 0, or 125 with a message.
pub fn main(args: &IncidentsArgs) -> i32 {
    out::finish(run(args))
}

fn run(args: &IncidentsArgs) -> anyhow::Result<i32> {
    let target = Target::resolve(&args.target);
    let state = target.existing_state_dir()?;
    let incidents = list(state)?;
    let mut stdout = out::stdout();
    match &args.command {
        None if args.json => {
            serde_json::to_writer_pretty(&mut stdout, &incidents)?;
            writeln!(stdout)?;
        }
        None => table(&mut stdout, &incidents, &state.join(INCIDENTS_DIR))?,
        Some(IncidentsCommand::Show { id }) => {
            let incident = find(&incidents, id.as_deref(), state)?;
            let bytes = report(incident, args.json)?;
            stdout.write_all(&bytes)?;
            if args.json && !bytes.ends_with(b"\n") {
                stdout.write_all(b"\n")?;
            }
        }
    }
    stdout.flush()?;
    Ok(0)
}

/// The list as aligned columns, oldest first.
fn table(out: &mut impl Write, incidents: &[Incident], dir: &Path) -> anyhow::Result<()> {
    if incidents.is_empty() {
        writeln!(out, "no incidents in {}", dir.display())?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = incidents
        .iter()
        .map(|i| {
            let cause = match &i.source {
                Some(source) => format!("{} ({source})", i.cause),
                None => i.cause.clone(),
            };
            [
                i.id.clone(),
                i.at.clone(),
                i.service.clone(),
                cause,
                i.verdict.first().cloned().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let header = ["ID", "TIME", "SERVICE", "CAUSE", "VERDICT"].map(str::to_owned);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                writeln!(out, "{cell}")?;
            } else {
                out::pad(out, cell, widths[column])?;
                write!(out, "  ")?;
            }
        }
    }
    Ok(())
}
