//! Incidents and sent-reminder markers in sled: `inc_incidents` maps
//! `tenant/id` to [`Incident`] JSON, `inc_reminders` maps
//! `tenant/id/stage/kind` to the time the reminder was emitted.

use super::{Incident, IncidentError, IncidentReminder};

/// The sled trees of incidents.
#[derive(Clone)]
pub struct IncidentStore {
    db: sled::Db,
    incidents: sled::Tree,
    reminders: sled::Tree,
}

fn key(tenant: &str, id: &str) -> Vec<u8> {
    format!("{tenant}/{id}").into_bytes()
}

fn decode(k: &[u8], v: &[u8]) -> Result<Incident, IncidentError> {
    serde_json::from_slice(v).map_err(|e| {
        IncidentError::Storage(format!(
            "corrupt incident {}: {e}",
            String::from_utf8_lossy(k)
        ))
    })
}

/// Marker key of a reminder.
pub fn reminder_key(r: &IncidentReminder) -> Vec<u8> {
    format!(
        "{}/{}/{}/{}",
        r.tenant,
        r.incident_id,
        r.stage.as_str(),
        r.kind.as_str()
    )
    .into_bytes()
}

impl IncidentStore {
    /// Opens (creating) the trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, IncidentError> {
        Ok(Self {
            db: db.clone(),
            incidents: db.open_tree("inc_incidents")?,
            reminders: db.open_tree("inc_reminders")?,
        })
    }

    /// Inserts or replaces an incident and flushes.
    pub fn put(&self, inc: &Incident) -> Result<(), IncidentError> {
        let v = serde_json::to_vec(inc).map_err(|e| IncidentError::Storage(e.to_string()))?;
        self.incidents.insert(key(&inc.tenant, &inc.id), v)?;
        self.db.flush()?;
        Ok(())
    }

    /// One incident of a tenant.
    pub fn get(&self, tenant: &str, id: &str) -> Result<Option<Incident>, IncidentError> {
        let k = key(tenant, id);
        self.incidents.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Incidents of a tenant, newest detection first.
    pub fn list(&self, tenant: &str) -> Result<Vec<Incident>, IncidentError> {
        let mut out = Vec::new();
        for kv in self.incidents.scan_prefix(format!("{tenant}/")) {
            let (k, v) = kv?;
            out.push(decode(&k, &v)?);
        }
        out.sort_by(|a, b| b.detected_ms.cmp(&a.detected_ms).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Every incident of every tenant.
    pub fn all(&self) -> Result<Vec<Incident>, IncidentError> {
        let mut out = Vec::new();
        for kv in self.incidents.iter() {
            let (k, v) = kv?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Whether a reminder was already emitted.
    pub fn reminder_sent(&self, r: &IncidentReminder) -> Result<bool, IncidentError> {
        Ok(self.reminders.contains_key(reminder_key(r))?)
    }

    /// Records a reminder as emitted; `false` when it already was.
    pub fn mark_reminder_sent(
        &self,
        r: &IncidentReminder,
        at_ms: u64,
    ) -> Result<bool, IncidentError> {
        let prev = self.reminders.compare_and_swap(
            reminder_key(r),
            None as Option<&[u8]>,
            Some(&at_ms.to_be_bytes()[..]),
        )?;
        self.db.flush()?;
        Ok(prev.is_ok())
    }
}
