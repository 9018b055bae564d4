//! The AWS calls the ECS source makes, each counted in `muster_ecs_api_calls_total`,
//! and the task definition cache: a task definition revision never changes, so each is
//! described once and kept for the life of the process (a few hundred bytes each).
//! Container instances' addresses are cached by `hosts.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ecs::types::{DesiredStatus, TaskDefinitionField};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use tokio::task::JoinSet;

use super::config::EcsSourceConfig;
use super::metrics::EcsMetrics;
use super::parse::{self, Host, TaskDefinition, TaskFacts};

/// `DescribeTasks` and `DescribeContainerInstances` take at most this many per call;
/// `ListTasks` pages as many, and a `DescribeInstances` filter is given as many ids.
pub const PAGE: usize = 100;
/// `DescribeInstances` page size (its maximum).
const INSTANCES_PAGE: i32 = 1000;
/// Task definitions described at once when a reconcile meets many new ones (a cold start
/// of a cluster with 50 services), without bursting into ECS's rate limits.
const LOOKUPS_IN_FLIGHT: usize = 8;
/// SQS hands out at most this many messages per receive.
const RECEIVE_MAX: i32 = 10;

/// An AWS call that failed, with the SDK's full error chain.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub message: String,
}

/// The ECS, EC2 and SQS clients of one source, and its task definition cache.
pub struct Aws {
    ecs: aws_sdk_ecs::Client,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    /// The region the clients use, for the `REGION` attribute.
    pub region: Option<String>,
    /// Seconds one receive waits (`long_poll`, 1-20, checked with the configuration).
    long_poll_seconds: i32,
    metrics: Arc<EcsMetrics>,
    definitions: Mutex<HashMap<String, Arc<TaskDefinition>>>,
}

impl Aws {
    /// Builds clients from the standard credential chain, the configured region and
    /// the endpoint override. Makes no call: credentials are resolved on first use.
    pub async fn connect(config: &EcsSourceConfig, metrics: Arc<EcsMetrics>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                // Longer than the SQS long poll.
                .operation_attempt_timeout(config.long_poll + Duration::from_secs(10))
                .build(),
        );
        if let Some(region) = &config.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(url) = &config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        Self {
            ecs: aws_sdk_ecs::Client::new(&shared),
            ec2: aws_sdk_ec2::Client::new(&shared),
            sqs: aws_sdk_sqs::Client::new(&shared),
            region: shared.region().map(ToString::to_string),
            // Checked to be 1-20 s when the configuration was read.
            long_poll_seconds: config.long_poll.as_secs().min(20) as i32,
            metrics,
            definitions: Mutex::default(),
        }
    }

    fn counted<T, E>(&self, operation: &'static str, result: Result<T, E>) -> Result<T, AwsError>
    where
        E: std::error::Error,
    {
        self.metrics.api_call(operation, result.is_ok());
        result.map_err(|error| AwsError {
            operation,
            message: aws_sdk_ecs::error::DisplayErrorContext(&error).to_string(),
        })
    }

    /// Every task of `cluster` whose desired status is RUNNING: `ListTasks` pages, then
    /// `DescribeTasks` in batches of 100.
    pub async fn running_tasks(&self, cluster: &str) -> Result<Vec<TaskFacts>, AwsError> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .ecs
                .list_tasks()
                .cluster(cluster)
                .desired_status(DesiredStatus::Running);
            let result = page
                .max_results(PAGE as i32)
                .set_next_token(token)
                .send()
                .await;
            let page = self.counted("ListTasks", result)?;
            arns.extend(page.task_arns().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let mut tasks = Vec::with_capacity(arns.len());
        for batch in arns.chunks(PAGE) {
            let request = self.ecs.describe_tasks().cluster(cluster);
            let result = request.set_tasks(Some(batch.to_vec())).send().await;
            let described = self.counted("DescribeTasks", result)?;
            tasks.extend(described.tasks().iter().filter_map(parse::facts_from_api));
        }
        Ok(tasks)
    }

    /// The task definition at `arn`, described once and then served from the cache.
    pub async fn task_definition(&self, arn: &str) -> Result<Arc<TaskDefinition>, AwsError> {
        if let Some(known) = self.cached(arn) {
            return Ok(known);
        }
        let request = self.ecs.describe_task_definition().task_definition(arn);
        let result = request.include(TaskDefinitionField::Tags).send().await;
        let answer = self.counted("DescribeTaskDefinition", result)?;
        let Some(definition) = answer.task_definition() else {
            return Err(AwsError {
                operation: "DescribeTaskDefinition",
                message: format!("no task definition in the answer for {arn}"),
            });
        };
        let read = Arc::new(parse::task_definition_from_api(definition, answer.tags()));
        let mut cache = self.definitions.lock().expect("cache lock");
        cache.insert(arn.to_owned(), read.clone());
        Ok(read)
    }

    /// Puts every task definition in `arns` in the cache, [`LOOKUPS_IN_FLIGHT`] at once.
    pub async fn prefetch(self: &Arc<Self>, arns: HashSet<&str>) -> Result<(), AwsError> {
        let missing: Vec<String> = arns
            .into_iter()
            .filter(|arn| self.cached(arn).is_none())
            .map(str::to_owned)
            .collect();
        for chunk in missing.chunks(LOOKUPS_IN_FLIGHT) {
            let mut lookups = JoinSet::new();
            for arn in chunk {
                let (aws, arn) = (self.clone(), arn.clone());
                lookups.spawn(async move { aws.task_definition(&arn).await.map(drop) });
            }
            while let Some(done) = lookups.join_next().await {
                done.map_err(|error| AwsError {
                    operation: "DescribeTaskDefinition",
                    message: error.to_string(),
                })??;
            }
        }
        Ok(())
    }

    fn cached(&self, arn: &str) -> Option<Arc<TaskDefinition>> {
        self.definitions
            .lock()
            .expect("cache lock")
            .get(arn)
            .cloned()
    }

    /// The EC2 instance id of each of `arns` (at most [`PAGE`] container instances of
    /// `cluster`), by container instance id (the ARN's last segment: ECS answers
    /// failures with a shortened ARN). Container instances ECS does not know are left
    /// out.
    pub async fn container_instances(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<HashMap<String, String>, AwsError> {
        let request = self.ecs.describe_container_instances().cluster(cluster);
        let result = request
            .set_container_instances(Some(arns.to_vec()))
            .send()
            .await;
        let answer = self.counted("DescribeContainerInstances", result)?;
        Ok(answer
            .container_instances()
            .iter()
            .filter_map(|c| {
                let arn = c.container_instance_arn()?;
                let id = arn.rsplit('/').next().unwrap_or(arn);
                Some((id.to_owned(), c.ec2_instance_id()?.to_owned()))
            })
            .collect())
    }

    /// The EC2 instances among `ids` (at most [`PAGE`]), with their addresses. Asked by
    /// filter, so an instance that is gone is left out instead of failing the call (as
    /// `InstanceIds` would, for all of them).
    pub async fn instances(&self, ids: &[String]) -> Result<Vec<Host>, AwsError> {
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let mut hosts = Vec::with_capacity(ids.len());
        let mut token = None;
        // At most one instance per id: a server that pages on past that is not believed.
        for _ in 0..=ids.len() {
            let request = self.ec2.describe_instances().filters(filter.clone());
            let result = request
                .max_results(INSTANCES_PAGE)
                .set_next_token(token)
                .send()
                .await;
            let page = self.counted("DescribeInstances", result)?;
            let instances = page.reservations().iter().flat_map(|r| r.instances());
            hosts.extend(instances.filter_map(parse::host_from_api));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        Ok(hosts)
    }

    /// One long poll of `queue`.
    pub async fn receive(&self, queue: &str) -> Result<Vec<Message>, AwsError> {
        let request = self.sqs.receive_message().queue_url(queue);
        let result = request
            .max_number_of_messages(RECEIVE_MAX)
            .wait_time_seconds(self.long_poll_seconds)
            .send()
            .await;
        Ok(self.counted("ReceiveMessage", result)?.messages().to_vec())
    }

    /// Deletes the messages with these receipt handles (at most 10, one receive's worth).
    pub async fn delete(&self, queue: &str, handles: Vec<String>) -> Result<(), AwsError> {
        let entries = handles
            .into_iter()
            .enumerate()
            .map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        let request = self.sqs.delete_message_batch().queue_url(queue);
        let result = request.set_entries(Some(entries)).send().await;
        let answer = self.counted("DeleteMessageBatch", result)?;
        match answer.failed().first() {
            None => Ok(()),
            Some(failed) => Err(AwsError {
                operation: "DeleteMessageBatch",
                message: format!(
                    "{} entries failed, first: {failed:?}",
                    answer.failed().len()
                ),
            }),
        }
    }
}
