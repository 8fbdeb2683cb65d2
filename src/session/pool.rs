//! The session pool and admission control for delegated work.
//!
//! Admission comes first: a task waits for a global, a per-agent and a
//! per-model slot *before* any session is created, so queued work costs
//! nothing but a record. The pool keeps finished sessions per agent, reset to
//! their system prefix, so the next task for that agent reuses the warm
//! prefix instead of building a new session; it drops sessions that sat idle
//! too long or were reused too often.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Runtime, Session, SessionSetup};
use crate::config::{ConcurrencyConfig, PoolConfig};
use crate::events::PoolStats;

/// The slots one running task holds; dropping it frees them.
pub struct Admitted {
    _global: OwnedSemaphorePermit,
    _agent: OwnedSemaphorePermit,
    _model: Option<OwnedSemaphorePermit>,
}

/// Global, per-agent and per-model caps as semaphores.
pub struct Admission {
    config: ConcurrencyConfig,
    global: Arc<Semaphore>,
    agents: Mutex<HashMap<String, Arc<Semaphore>>>,
    models: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Admission {
    pub fn new(config: ConcurrencyConfig) -> Self {
        Admission {
            global: Arc::new(Semaphore::new(config.global)),
            config,
            agents: Mutex::default(),
            models: Mutex::default(),
        }
    }

    fn agent_semaphore(&self, agent: &str) -> Arc<Semaphore> {
        let key = agent.to_ascii_lowercase();
        let mut agents = self.agents.lock().expect("admission lock");
        agents
            .entry(key)
            .or_insert_with(|| {
                let cap = self
                    .config
                    .agents
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(agent))
                    .map_or(self.config.per_agent, |(_, cap)| *cap);
                Arc::new(Semaphore::new(cap.max(1)))
            })
            .clone()
    }

    fn model_semaphore(&self, model: &str) -> Option<Arc<Semaphore>> {
        let cap = *self.config.models.get(model)?;
        let mut models = self.models.lock().expect("admission lock");
        Some(
            models
                .entry(model.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(cap.max(1))))
                .clone(),
        )
    }

    /// Wait for every slot this task needs. Slots are taken in a fixed order
    /// (agent, model, global) so two waiters never hold each other's.
    pub async fn admit(&self, agent: &str, model: &str) -> Admitted {
        let agent_permit = self
            .agent_semaphore(agent)
            .acquire_owned()
            .await
            .expect("admission semaphores are never closed");
        let model_permit = match self.model_semaphore(model) {
            Some(semaphore) => Some(
                semaphore
                    .acquire_owned()
                    .await
                    .expect("admission semaphores are never closed"),
            ),
            None => None,
        };
        let global = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("admission semaphores are never closed");
        Admitted {
            _global: global,
            _agent: agent_permit,
            _model: model_permit,
        }
    }
}

struct Pooled {
    session: Session,
    released: Instant,
    reuses: u32,
}

pub struct SessionPool {
    config: PoolConfig,
    idle: Mutex<HashMap<String, Vec<Pooled>>>,
    /// How often each live session was reused, by session id.
    reuses: Mutex<HashMap<String, u32>>,
    stats: Mutex<PoolStats>,
}

impl SessionPool {
    pub fn new(config: PoolConfig) -> Self {
        SessionPool {
            config,
            idle: Mutex::default(),
            reuses: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    pub fn stats(&self) -> PoolStats {
        *self.stats.lock().expect("pool stats lock")
    }

    /// A session for `setup.agent`: a pooled one when available, else new.
    /// Returns whether it was reused.
    pub fn acquire(
        &self,
        runtime: &Runtime,
        setup: &SessionSetup,
    ) -> std::io::Result<(Session, bool)> {
        let key = setup.agent.name.to_ascii_lowercase();
        let idle_timeout = Duration::from_secs(self.config.idle_timeout_secs);
        let found = {
            let mut idle = self.idle.lock().expect("pool lock");
            let list = idle.entry(key).or_default();
            let before = list.len();
            list.retain(|pooled| pooled.released.elapsed() < idle_timeout);
            let expired = (before - list.len()) as u64;
            let found = list.pop();
            let mut stats = self.stats.lock().expect("pool stats lock");
            stats.evictions += expired;
            stats.idle = stats
                .idle
                .saturating_sub(expired + u64::from(found.is_some()));
            found
        };
        if let Some(pooled) = found {
            self.reuses
                .lock()
                .expect("pool lock")
                .insert(pooled.session.id().to_string(), pooled.reuses + 1);
            self.stats.lock().expect("pool stats lock").reuse_hits += 1;
            return Ok((pooled.session, true));
        }
        let session = Session::new(runtime.clone(), setup.clone())?;
        self.stats.lock().expect("pool stats lock").creations += 1;
        Ok((session, false))
    }

    /// Give a finished session back: reset and keep it, unless it was reused
    /// enough or the pool for its agent is full.
    pub fn release(&self, mut session: Session) {
        let reuses = self
            .reuses
            .lock()
            .expect("pool lock")
            .remove(session.id())
            .unwrap_or(0);
        let key = session.agent().to_ascii_lowercase();
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(key).or_default();
        let mut stats = self.stats.lock().expect("pool stats lock");
        if reuses >= self.config.max_reuse || list.len() >= self.config.max_idle_per_agent {
            stats.evictions += 1;
            return;
        }
        session.reset();
        list.push(Pooled {
            session,
            released: Instant::now(),
            reuses,
        });
        stats.idle += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn caps(
        global: usize,
        per_agent: usize,
        agents: &[(&str, usize)],
        models: &[(&str, usize)],
    ) -> Admission {
        Admission::new(ConcurrencyConfig {
            global,
            per_agent,
            agents: agents
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
            models: models
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
        })
    }

    /// Whether `admit` gets its slots without waiting.
    async fn admitted_now(admission: &Admission, agent: &str, model: &str) -> Option<Admitted> {
        tokio::time::timeout(Duration::from_millis(30), admission.admit(agent, model))
            .await
            .ok()
    }

    #[tokio::test]
    async fn each_cap_holds_until_a_slot_is_released() {
        // per-agent: Worker has 1 slot (names match case-insensitively)
        let admission = caps(10, 4, &[("worker", 1)], &[]);
        let first = admitted_now(&admission, "Worker", "m")
            .await
            .expect("first slot");
        assert!(admitted_now(&admission, "Worker", "m").await.is_none());
        assert!(admitted_now(&admission, "Reviewer", "m").await.is_some());
        drop(first);
        assert!(admitted_now(&admission, "Worker", "m").await.is_some());

        // global: 2 slots across agents
        let admission = caps(2, 4, &[], &[]);
        let _a = admitted_now(&admission, "Worker", "m").await.unwrap();
        let _b = admitted_now(&admission, "Planner", "m").await.unwrap();
        assert!(admitted_now(&admission, "Reviewer", "m").await.is_none());

        // per-model: 1 slot for "big", none for others
        let admission = caps(10, 4, &[], &[("big", 1)]);
        let _big = admitted_now(&admission, "Worker", "big").await.unwrap();
        assert!(admitted_now(&admission, "Reviewer", "big").await.is_none());
        assert!(
            admitted_now(&admission, "Reviewer", "small")
                .await
                .is_some()
        );
    }
}
