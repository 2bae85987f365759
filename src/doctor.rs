//! `user-accounts doctor [--repair]`: reports (and optionally repairs)
//! inconsistencies in the data. A progress bar on a terminal, plain lines
//! otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::RedisSettings;
use crate::store::doctor::{examine, mail_dead_letters, repair, Finding, Progress};
use crate::store::{Store, StoreError};

/// What a run found and did.
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub repaired: usize,
    /// Whether the data is consistent now.
    pub consistent: bool,
    /// Mail that failed every attempt: reported as a warning, never
    /// counted against consistency.
    pub mail_dead_letters: u64,
}

/// Checks the data, repairs what is safe when asked, and prints a report.
pub fn run(settings: &RedisSettings, repair_safe: bool) -> Result<Outcome, StoreError> {
    let (mut conn, keys) = Store::dedicated_connection(settings)?;
    let mut progress = Reporter::new();
    let findings = examine(&mut conn, &keys, &mut progress)?;
    progress.finish();
    let mut repaired = 0;
    let mut unrepaired = 0;
    for finding in &findings {
        let fixed = repair_safe && repair(&mut conn, &keys, finding)?;
        if fixed {
            repaired += 1;
            println!("repaired: {finding}");
        } else {
            unrepaired += 1;
            let note = match (repair_safe, finding.is_repairable()) {
                (false, true) => " (--repair fixes this)",
                (_, false) => " (needs a person: not repaired)",
                (true, true) => " (no longer applies or changed meanwhile)",
            };
            println!("found: {finding}{note}");
        }
    }
    let consistent = unrepaired == 0;
    let dead = mail_dead_letters(&mut conn, &keys)?;
    if dead > 0 {
        println!(
            "warning: {dead} mail message(s) failed every attempt and wait in the dead \
             letters; `user-accounts mail retry-dead` queues them again"
        );
    }
    println!(
        "{} finding(s), {repaired} repaired; the data is {}",
        findings.len(),
        if consistent {
            "consistent"
        } else {
            "NOT consistent"
        }
    );
    Ok(Outcome {
        findings,
        repaired,
        consistent,
        mail_dead_letters: dead,
    })
}

enum Reporter {
    Bar(Option<ProgressBar>),
    Lines,
}

impl Reporter {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar(None)
        } else {
            Self::Lines
        }
    }

    fn finish(&mut self) {
        if let Self::Bar(Some(bar)) = self {
            bar.finish();
        }
    }
}

impl Progress for Reporter {
    fn phase(&mut self, name: &str, total: Option<u64>) {
        match self {
            Self::Bar(bar) => {
                if let Some(previous) = bar.take() {
                    previous.finish();
                }
                let next = match total {
                    Some(total) => ProgressBar::new(total),
                    None => ProgressBar::new_spinner(),
                };
                if let Ok(style) =
                    ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} {elapsed}")
                {
                    next.set_style(style.progress_chars("=> "));
                }
                next.set_message(name.to_owned());
                *bar = Some(next);
            }
            Self::Lines => match total {
                Some(total) => eprintln!("checking {name}: {total} to read"),
                None => eprintln!("checking {name}"),
            },
        }
    }

    fn advance(&mut self, done: u64) {
        if let Self::Bar(Some(bar)) = self {
            bar.set_position(done);
        }
    }
}
