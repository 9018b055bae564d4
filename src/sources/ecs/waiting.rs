//! Task events that wait for their container instance's address, so the event loop goes
//! on with other tasks' events while it is looked up. Pure bookkeeping: the event loop
//! starts one lookup per container instance and, when it ends, takes every event that
//! waited for it.
//!
//! One entry per task: a newer event of a waiting task replaces the older (their queue
//! messages are all deleted once the newest is applied). Bounded by [`MAX_WAITING`]
//! tasks; past it an event is left in the queue, to come back after its visibility
//! timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::parse::{TaskDefinition, TaskFacts};

/// Tasks whose events may wait at once.
pub const MAX_WAITING: usize = 10_000;
/// Receipt handles kept per waiting task (SQS redelivers a message whose lookup takes
/// longer than the queue's visibility timeout); further copies are deleted as
/// duplicates once the task is applied.
const MAX_HANDLES: usize = 8;

/// A task's newest event waiting for its host, and the messages to delete once applied.
#[derive(Debug)]
pub struct Parked {
    pub facts: TaskFacts,
    /// When EventBridge saw the event.
    pub time: Option<SystemTime>,
    pub definition: Arc<TaskDefinition>,
    pub handles: Vec<String>,
}

/// What parking an event asks of the event loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Parking {
    /// The first event waiting for this container instance: start its lookup.
    LookUp,
    /// A lookup of this container instance is already under way.
    Joined,
    /// [`MAX_WAITING`] tasks wait already: leave the message in the queue.
    Full,
}

/// Every waiting event, by task and by container instance.
#[derive(Default)]
pub struct Waiting {
    tasks: HashMap<String, Parked>,
    /// Container instance ARN → the tasks waiting for it.
    hosts: HashMap<String, Vec<String>>,
}

impl Waiting {
    /// Parks `event` until container instance `host` is looked up.
    pub fn park(&mut self, host: &str, event: Parked) -> Parking {
        let task = event.facts.task_arn.clone();
        if let Some(parked) = self.tasks.get_mut(&task) {
            let mut older = event;
            if is_newer(&older.facts, &parked.facts) {
                std::mem::swap(parked, &mut older);
            }
            parked.handles.append(&mut older.handles);
            parked.handles.truncate(MAX_HANDLES);
            return Parking::Joined;
        }
        if self.tasks.len() >= MAX_WAITING {
            return Parking::Full;
        }
        self.tasks.insert(task.clone(), event);
        match self.hosts.get_mut(host) {
            Some(tasks) => {
                tasks.push(task);
                Parking::Joined
            }
            None => {
                self.hosts.insert(host.to_owned(), vec![task]);
                Parking::LookUp
            }
        }
    }

    /// Every event that waited for `host`.
    pub fn take(&mut self, host: &str) -> Vec<Parked> {
        let tasks = self.hosts.remove(host).unwrap_or_default();
        tasks
            .iter()
            .filter_map(|task| self.tasks.remove(task))
            .collect()
    }

    /// The container instances being looked up.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }
}

/// Whether `new` is a later state of its task than `old`: by version, else by update
/// time, else the later arrival.
fn is_newer(new: &TaskFacts, old: &TaskFacts) -> bool {
    match (new.version, old.version) {
        (Some(new), Some(old)) => new > old,
        _ => match (new.updated_at, old.updated_at) {
            (Some(new), Some(old)) => new >= old,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::ecs::parse::tests::{RUNNING, facts};

    fn event(task: &str, version: u64, handle: &str) -> Parked {
        let mut facts = facts(RUNNING);
        facts.task_arn = task.to_owned();
        facts.version = Some(version);
        Parked {
            facts,
            time: None,
            definition: Arc::default(),
            handles: vec![handle.to_owned()],
        }
    }

    #[test]
    fn one_lookup_per_host_and_the_newest_event_per_task() {
        let mut waiting = Waiting::default();
        assert_eq!(waiting.park("ci/1", event("t/a", 5, "h1")), Parking::LookUp);
        assert_eq!(waiting.park("ci/1", event("t/b", 1, "h2")), Parking::Joined);
        // An older copy of a's event, then a newer one: the newest wins, every handle kept.
        assert_eq!(waiting.park("ci/1", event("t/a", 4, "h3")), Parking::Joined);
        assert_eq!(waiting.park("ci/1", event("t/a", 6, "h4")), Parking::Joined);
        assert_eq!(waiting.park("ci/2", event("t/c", 1, "h5")), Parking::LookUp);
        assert_eq!(waiting.tasks.len(), 3);
        let mut hosts: Vec<&str> = waiting.hosts().collect();
        hosts.sort_unstable();
        assert_eq!(hosts, ["ci/1", "ci/2"]);
        let mut taken = waiting.take("ci/1");
        taken.sort_by(|x, y| x.facts.task_arn.cmp(&y.facts.task_arn));
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].facts.version, Some(6));
        let mut handles = taken[0].handles.clone();
        handles.sort_unstable();
        assert_eq!(handles, ["h1", "h3", "h4"]);
        assert!(waiting.take("ci/1").is_empty());
        assert_eq!(waiting.tasks.len(), 1);
        // The next event of a task whose lookup ended starts a new one.
        assert_eq!(waiting.park("ci/1", event("t/a", 7, "h6")), Parking::LookUp);
    }

    #[test]
    fn bounded_in_tasks_and_handles() {
        let mut waiting = Waiting::default();
        for n in 0..MAX_WAITING {
            waiting.park("ci/1", event(&format!("t/{n}"), 1, "h"));
        }
        assert_eq!(waiting.park("ci/2", event("t/new", 1, "h")), Parking::Full);
        // A task already waiting still takes its newer event.
        assert_eq!(waiting.park("ci/1", event("t/0", 2, "h")), Parking::Joined);
        for n in 0..20 {
            waiting.park("ci/1", event("t/0", 3, &format!("copy{n}")));
        }
        let taken = waiting.take("ci/1");
        let first = taken.iter().find(|p| p.facts.task_arn == "t/0").unwrap();
        assert_eq!(first.handles.len(), MAX_HANDLES);
    }
}
