//! The lifecycle words of the data model as types: a job's status, a task's
//! kind and state. Each has exactly one string form, the one stored in the
//! database and shown by the API, so a typo is a compile error instead of a
//! query that silently matches nothing, and a `match` on a kind has no
//! "unknown" arm.

use std::fmt;
use std::str::FromStr;

use r2d2_sqlite::rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Declares a string-backed enum with its one string form, `ALL`, parsing,
/// display and SQLite conversions.
macro_rules! words {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{other:?} is not one of {}",
                        $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> r2d2_sqlite::rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                v.as_str()?.parse().map_err(|e: String| FromSqlError::Other(e.into()))
            }
        }
    };
}

words! {
    /// Where a job stands.
    JobStatus {
        /// Created with `"submit": false`; sources may still be added.
        Draft = "DRAFT",
        Queued = "QUEUED",
        Processing = "PROCESSING",
        Completed = "COMPLETED",
        Failed = "FAILED",
        Cancelled = "CANCELLED",
    }
}

impl JobStatus {
    /// A job in one of these will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }
}

words! {
    /// What a task does: plan a source, pack parts, run a part's hook, finish the job.
    TaskKind {
        Plan = "PLAN",
        Pack = "PACK",
        Hook = "HOOK",
        Finish = "FINISH",
    }
}

words! {
    /// Where a planned part stands.
    PartState {
        Pending = "PENDING",
        Done = "DONE",
    }
}

words! {
    /// Where a campaign stands.
    CampaignStatus {
        Running = "RUNNING",
        /// Stops once the current batch has ended.
        Stopping = "STOPPING",
        Stopped = "STOPPED",
        Completed = "COMPLETED",
        Failed = "FAILED",
    }
}

words! {
    /// Where a watched file went when its job ended (a skipped duplicate:
    /// `duplicates`).
    Disposition {
        Done = "done",
        Failed = "failed",
        Deleted = "deleted",
        Kept = "kept",
        Duplicates = "duplicates",
    }
}

words! {
    /// Where a task stands.
    TaskState {
        Waiting = "WAITING",
        Ready = "READY",
        Running = "RUNNING",
        Done = "DONE",
        Failed = "FAILED",
        Cancelled = "CANCELLED",
    }
}

impl TaskState {
    /// A task in one of these will not run again.
    pub fn is_final(self) -> bool {
        matches!(self, TaskState::Done | TaskState::Failed | TaskState::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_string_form_each_way() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in TaskKind::ALL {
            assert_eq!(k.to_string().parse::<TaskKind>(), Ok(*k));
        }
        assert!("queued".parse::<JobStatus>().unwrap_err().contains("DRAFT, QUEUED"));
    }
}
