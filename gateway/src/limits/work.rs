//! A per-tenant cap on the request path's synchronous guard work: parsing the body, the rules
//! over every field and tokenizing the classifier windows. That work runs on the proxy thread
//! that owns the connection (pingora's threads each run their own runtime, with no stealing),
//! so a tenant sending many large requests at once queues its evaluations ahead of everyone
//! else's on every thread. With at most `per_tenant` of a tenant's requests in that section
//! at once (default: proxy threads - 1), the rest of its requests wait their turn without
//! using a core, and the other tenants' requests find a thread free. The model's own work is
//! bounded apart (`models.sessions_per_tenant`); a request gives its slot back before it
//! awaits the scores, so a tenant's classification still runs in parallel.
//!
//! Only callers with a key are limited: requests without one have no tenant to tell apart.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots per tenant.
pub struct TenantWork {
    per_tenant: usize,
    tenants: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    waiting: prometheus::IntGauge,
}

impl std::fmt::Debug for TenantWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantWork")
            .field("per_tenant", &self.per_tenant)
            .finish()
    }
}

/// Tenants remembered before idle ones are forgotten.
const SWEEP_AT: usize = 1024;

impl TenantWork {
    /// `per_tenant` slots for each tenant; `waiting` counts requests waiting for one
    /// (`portcullis_guard_waiting`).
    pub fn new(per_tenant: usize, waiting: prometheus::IntGauge) -> TenantWork {
        TenantWork {
            per_tenant: per_tenant.max(1),
            tenants: Mutex::new(HashMap::new()),
            waiting,
        }
    }

    /// A slot of `tenant`'s, waiting for one when all are taken. Dropping it gives it back.
    /// (`None` only if the semaphore were closed, which nothing does.)
    pub async fn acquire(&self, tenant: &Arc<str>) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut m = self.tenants.lock();
            if m.len() >= SWEEP_AT {
                // tenants with no request in the section hold no state worth keeping
                let full = self.per_tenant;
                m.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < full);
            }
            m.entry(tenant.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
                .clone()
        };
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Some(p);
        }
        self.waiting.inc();
        let _counted = Waiting(&self.waiting);
        sem.acquire_owned().await.ok()
    }

    /// Tenants remembered (tests).
    pub fn tenants(&self) -> usize {
        self.tenants.lock().len()
    }
}

/// Keeps the waiting gauge right when a waiting request is dropped (client gone).
struct Waiting<'a>(&'a prometheus::IntGauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_tenant_waits_for_its_own_slots_only() {
        let gauge = prometheus::IntGauge::new("w", "w").unwrap();
        let w = Arc::new(TenantWork::new(1, gauge.clone()));
        let loud: Arc<str> = Arc::from("loud");
        let quiet: Arc<str> = Arc::from("quiet");
        let held = w.acquire(&loud).await;
        // the loud tenant's second request waits ...
        let w2 = w.clone();
        let l2 = loud.clone();
        let second = tokio::spawn(async move { w2.acquire(&l2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished());
        assert_eq!(gauge.get(), 1);
        // ... the quiet tenant does not
        let q = tokio::time::timeout(Duration::from_millis(100), w.acquire(&quiet)).await;
        assert!(q.is_ok(), "another tenant's slot is free");
        drop(held);
        let p = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("the slot came back")
            .unwrap();
        drop(p);
        assert_eq!(gauge.get(), 0);
    }

    #[tokio::test]
    async fn idle_tenants_are_forgotten() {
        let w = TenantWork::new(2, prometheus::IntGauge::new("w", "w").unwrap());
        for i in 0..SWEEP_AT + 10 {
            let t: Arc<str> = Arc::from(format!("t{i}").as_str());
            drop(w.acquire(&t).await);
        }
        assert!(w.tenants() < SWEEP_AT, "{}", w.tenants());
    }
}
