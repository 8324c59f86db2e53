//! The per-dataset privacy ledger: every DP run on a dataset (keyed by the SHA-256 of its
//! content) with the ε it has spent, and the dataset's lifetime budget. Runs compose by basic
//! composition (ε and δ add up), which holds for any mix of mechanisms and accountants.
//!
//! Durability: every change is a read-modify-write under an exclusive lock on `<ledger>.lock`;
//! the new file is written beside the old one, fsynced, renamed over it, and the directory is
//! fsynced. A crash leaves the old or the new ledger, never a torn one. The trainer records each
//! step's spend *before* it applies that step's update, so a crash can only overstate the spend.
//! A run that never finished keeps its whole planned ε reserved until it is released.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The ledger file format this build reads and writes.
pub const FORMAT: u32 = 1;

/// Errors of the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Reading or writing the ledger failed.
    #[error("ledger {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The ledger file is not valid.
    #[error("ledger {path} is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The run would take the dataset past its lifetime budget.
    #[error(
        "refused: dataset {dataset} ({name}) has spent ε={spent:.4}, δ={spent_delta:.2e} of its \
         lifetime budget ε={budget:.4}, δ={budget_delta:.2e}; this run needs ε={needed:.4}, \
         δ={needed_delta:.2e}"
    )]
    OverBudget {
        /// Dataset digest (short).
        dataset: String,
        /// Dataset label.
        name: String,
        /// ε already spent or reserved.
        spent: f64,
        /// δ already spent or reserved.
        spent_delta: f64,
        /// Lifetime ε.
        budget: f64,
        /// Lifetime δ.
        budget_delta: f64,
        /// ε this run plans to spend.
        needed: f64,
        /// δ this run needs.
        needed_delta: f64,
    },
    /// A job asked for a larger lifetime budget than the ledger holds.
    #[error(
        "dataset {dataset} already has lifetime budget ε={old_epsilon}, δ={old_delta:.2e}; a \
         budget can be lowered, never raised (asked for ε={epsilon}, δ={delta:.2e})"
    )]
    BudgetRaised {
        /// Dataset digest (short).
        dataset: String,
        /// Recorded ε.
        old_epsilon: f64,
        /// Recorded δ.
        old_delta: f64,
        /// Requested ε.
        epsilon: f64,
        /// Requested δ.
        delta: f64,
    },
    /// No such run.
    #[error("no run `{run}` for dataset {dataset} in the ledger")]
    UnknownRun {
        /// Dataset digest.
        dataset: String,
        /// Run id.
        run: String,
    },
}

/// A lifetime (ε, δ) budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Training (or crashed while training): the planned ε stays reserved.
    Running,
    /// Ran all its steps.
    Finished,
    /// Stopped early (budget, error, interruption); its recorded spend counts.
    Stopped,
}

/// One run on a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Unique run id.
    pub run: String,
    /// Job name.
    pub job: String,
    /// Start time, seconds since the Unix epoch.
    pub started: u64,
    /// Accountant that computed ε.
    pub accountant: String,
    /// Poisson sample rate q.
    pub sample_rate: f64,
    /// Noise multiplier σ.
    pub noise_multiplier: f64,
    /// δ of this run.
    pub delta: f64,
    /// Steps the run may take.
    pub planned_steps: u64,
    /// ε after all planned steps (reserved while running).
    pub planned_epsilon: f64,
    /// Steps whose spend is recorded.
    pub steps: u64,
    /// ε spent by those steps.
    pub epsilon: f64,
    /// State.
    pub status: RunStatus,
}

impl RunRecord {
    /// What the run counts against the budget: its reservation while running, else its spend.
    pub fn charged(&self) -> f64 {
        match self.status {
            RunStatus::Running => self.planned_epsilon.max(self.epsilon),
            _ => self.epsilon,
        }
    }
}

/// Everything the ledger knows about one dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetAccount {
    /// A label for people (the file name it was first seen under).
    pub name: String,
    /// Lifetime budget, when one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Runs, oldest first.
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

impl DatasetAccount {
    /// (ε, δ) spent or reserved by all runs (basic composition).
    pub fn spent(&self) -> (f64, f64) {
        let eps = self.runs.iter().map(RunRecord::charged).sum();
        let delta = self
            .runs
            .iter()
            .filter(|r| r.steps > 0 || r.status == RunStatus::Running)
            .map(|r| r.delta)
            .sum();
        (eps, delta)
    }
}

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    /// [`FORMAT`].
    pub format: u32,
    /// Dataset digest (hex SHA-256) → account.
    pub datasets: BTreeMap<String, DatasetAccount>,
}

impl Default for LedgerFile {
    fn default() -> Self {
        Self {
            format: FORMAT,
            datasets: BTreeMap::new(),
        }
    }
}

/// Handle to a ledger file.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

fn short(d: &str) -> String {
    d.chars().take(12).collect()
}

impl Ledger {
    /// Open (or, on first write, create) the ledger at `path`, checking it reads.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let l = Self {
            path: path.to_path_buf(),
        };
        l.read()?;
        Ok(l)
    }

    /// The ledger's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> LedgerError {
        LedgerError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read(&self) -> Result<LedgerFile, LedgerError> {
        let raw = match std::fs::read(&self.path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LedgerFile::default()),
            Err(e) => return Err(self.io(e)),
        };
        let file: LedgerFile = serde_json::from_slice(&raw).map_err(|e| LedgerError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if file.format != FORMAT {
            return Err(LedgerError::Corrupt {
                path: self.path.clone(),
                message: format!("format {} (this build reads {FORMAT})", file.format),
            });
        }
        Ok(file)
    }

    /// The current content.
    pub fn snapshot(&self) -> Result<LedgerFile, LedgerError> {
        self.read()
    }

    /// Read-modify-write under the lock, durably.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut LedgerFile) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| self.io(e))?;
        let lock_path = self.path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        let mut file = self.read()?;
        let out = change(&mut file)?;
        let json = serde_json::to_vec_pretty(&file).map_err(|e| LedgerError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = File::create(&tmp).map_err(|e| self.io(e))?;
            f.write_all(&json).map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        drop(lock);
        Ok(out)
    }

    /// Register a run before it starts: refuse it when its planned ε (and δ) would take the
    /// dataset past its lifetime budget. Sets the budget on first use; a later job may lower it.
    pub fn begin(
        &self,
        dataset: &str,
        name: &str,
        budget: Option<Budget>,
        run: RunRecord,
    ) -> Result<(), LedgerError> {
        self.update(|file| {
            let account = file.datasets.entry(dataset.to_string()).or_default();
            if account.name.is_empty() {
                account.name = name.to_string();
            }
            if let Some(b) = budget {
                match account.budget {
                    Some(old) if b.epsilon > old.epsilon || b.delta > old.delta => {
                        return Err(LedgerError::BudgetRaised {
                            dataset: short(dataset),
                            old_epsilon: old.epsilon,
                            old_delta: old.delta,
                            epsilon: b.epsilon,
                            delta: b.delta,
                        });
                    }
                    _ => account.budget = Some(b),
                }
            }
            if let Some(b) = account.budget {
                let (spent, spent_delta) = account.spent();
                if spent + run.planned_epsilon > b.epsilon * (1.0 + 1e-12)
                    || spent_delta + run.delta > b.delta * (1.0 + 1e-12)
                {
                    return Err(LedgerError::OverBudget {
                        dataset: short(dataset),
                        name: account.name.clone(),
                        spent,
                        spent_delta,
                        budget: b.epsilon,
                        budget_delta: b.delta,
                        needed: run.planned_epsilon,
                        needed_delta: run.delta,
                    });
                }
            }
            account.runs.push(run);
            Ok(())
        })
    }

    fn with_run(
        &self,
        dataset: &str,
        run: &str,
        change: impl FnOnce(&mut RunRecord),
    ) -> Result<(), LedgerError> {
        self.update(|file| {
            let r = file
                .datasets
                .get_mut(dataset)
                .and_then(|a| a.runs.iter_mut().find(|r| r.run == run))
                .ok_or_else(|| LedgerError::UnknownRun {
                    dataset: short(dataset),
                    run: run.to_string(),
                })?;
            change(r);
            Ok(())
        })
    }

    /// Record that `steps` steps have spent `epsilon` (call before releasing the step's update).
    pub fn record(
        &self,
        dataset: &str,
        run: &str,
        steps: u64,
        epsilon: f64,
    ) -> Result<(), LedgerError> {
        self.with_run(dataset, run, |r| {
            r.steps = steps;
            r.epsilon = r.epsilon.max(epsilon);
        })
    }

    /// Close a run: its reservation is released and its recorded spend stays.
    pub fn finish(&self, dataset: &str, run: &str, status: RunStatus) -> Result<(), LedgerError> {
        self.with_run(dataset, run, |r| r.status = status)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(id: &str, planned: f64) -> RunRecord {
        RunRecord {
            run: id.into(),
            job: "t".into(),
            started: 0,
            accountant: "rdp".into(),
            sample_rate: 0.01,
            noise_multiplier: 1.0,
            delta: 1e-6,
            planned_steps: 100,
            planned_epsilon: planned,
            steps: 0,
            epsilon: 0.0,
            status: RunStatus::Running,
        }
    }

    #[test]
    fn runs_compose_and_the_lifetime_budget_refuses_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("ledger.json")).unwrap();
        let b = Some(Budget {
            epsilon: 5.0,
            delta: 1e-5,
        });
        l.begin("abc", "train.jsonl", b, run("r1", 3.0)).unwrap();
        // While r1 runs its whole plan is reserved.
        let err = l
            .begin("abc", "train.jsonl", None, run("r2", 2.5))
            .unwrap_err();
        assert!(matches!(err, LedgerError::OverBudget { .. }), "{err}");
        // r1 stops early after spending 1.2: 3.8 left.
        l.record("abc", "r1", 40, 1.2).unwrap();
        l.finish("abc", "r1", RunStatus::Stopped).unwrap();
        l.begin("abc", "train.jsonl", None, run("r2", 2.5)).unwrap();
        l.record("abc", "r2", 100, 2.5).unwrap();
        l.finish("abc", "r2", RunStatus::Finished).unwrap();
        let err = l
            .begin("abc", "x", None, run("r3", 1.5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spent ε=3.7000") && err.contains("needs ε=1.5000"),
            "{err}"
        );
        // Another dataset has its own account; budgets cannot be raised.
        l.begin("def", "other", None, run("r4", 100.0)).unwrap();
        let err = l.begin(
            "abc",
            "x",
            Some(Budget {
                epsilon: 50.0,
                delta: 1e-5,
            }),
            run("r5", 1.0),
        );
        assert!(matches!(err, Err(LedgerError::BudgetRaised { .. })));
        let snap = l.snapshot().unwrap();
        assert_eq!(snap.datasets["abc"].runs.len(), 2);
        assert!((snap.datasets["abc"].spent().0 - 3.7).abs() < 1e-12);
        // Nothing left behind but the ledger and its lock.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["ledger.json", "ledger.lock"]);
    }

    #[test]
    fn a_corrupt_ledger_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.json");
        std::fs::write(&p, "{\"format\": 1, \"datasets\": {").unwrap();
        assert!(matches!(Ledger::open(&p), Err(LedgerError::Corrupt { .. })));
    }
}
