"""What Google Cloud's predefined roles allow, and what each API method requires.

Kept in the tests, not derived from the code, so that a call the code starts making without a
role that allows it fails a test instead of a production request. Each table names its source;
when Google changes a role or a method's permission, update the entry and its source together.
Only the permissions relevant to the services this project uses are listed for each role.
"""

from __future__ import annotations

# Predefined roles -> the permissions they grant (the relevant part of each role).
# Sources (the "IAM roles and permissions" index, one page per service):
#   https://cloud.google.com/iam/docs/roles-permissions/datastore    (Firestore / Datastore)
#   https://cloud.google.com/iam/docs/roles-permissions/pubsub
#   https://cloud.google.com/iam/docs/roles-permissions/monitoring
#   https://cloud.google.com/iam/docs/roles-permissions/logging
#   https://cloud.google.com/iam/docs/roles-permissions/secretmanager
#   https://cloud.google.com/iam/docs/roles-permissions/run
#   https://cloud.google.com/iam/docs/roles-permissions/iam
#   https://cloud.google.com/iam/docs/roles-permissions/parametermanager
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/datastore.user": frozenset(
        {
            "datastore.databases.get",
            "datastore.databases.getMetadata",
            "datastore.entities.allocateIds",
            "datastore.entities.create",
            "datastore.entities.delete",
            "datastore.entities.get",
            "datastore.entities.list",
            "datastore.entities.update",
            "datastore.indexes.list",
            "datastore.namespaces.get",
            "datastore.namespaces.list",
            "datastore.statistics.get",
            "datastore.statistics.list",
        }
    ),
    "roles/datastore.viewer": frozenset(
        {
            "datastore.databases.get",
            "datastore.databases.getMetadata",
            "datastore.entities.get",
            "datastore.entities.list",
            "datastore.indexes.get",
            "datastore.indexes.list",
            "datastore.namespaces.get",
            "datastore.namespaces.list",
            "datastore.statistics.get",
            "datastore.statistics.list",
        }
    ),
    "roles/pubsub.publisher": frozenset({"pubsub.topics.publish"}),
    "roles/pubsub.subscriber": frozenset(
        {
            "pubsub.snapshots.seek",
            "pubsub.subscriptions.consume",
            "pubsub.topics.attachSubscription",
        }
    ),
    "roles/pubsub.viewer": frozenset(
        {
            "pubsub.schemas.get",
            "pubsub.schemas.list",
            "pubsub.snapshots.get",
            "pubsub.snapshots.list",
            "pubsub.subscriptions.get",
            "pubsub.subscriptions.list",
            "pubsub.topics.get",
            "pubsub.topics.list",
        }
    ),
    "roles/monitoring.metricWriter": frozenset(
        {
            "monitoring.metricDescriptors.create",
            "monitoring.metricDescriptors.get",
            "monitoring.metricDescriptors.list",
            "monitoring.monitoredResourceDescriptors.get",
            "monitoring.monitoredResourceDescriptors.list",
            "monitoring.timeSeries.create",
        }
    ),
    "roles/monitoring.viewer": frozenset(
        {
            "monitoring.metricDescriptors.get",
            "monitoring.metricDescriptors.list",
            "monitoring.monitoredResourceDescriptors.get",
            "monitoring.monitoredResourceDescriptors.list",
            "monitoring.timeSeries.list",
        }
    ),
    "roles/logging.logWriter": frozenset({"logging.logEntries.create", "logging.logEntries.route"}),
    "roles/secretmanager.secretAccessor": frozenset({"secretmanager.versions.access"}),
    "roles/run.developer": frozenset(
        {
            "run.workerpools.get",
            "run.workerpools.list",
            "run.workerpools.update",
            "run.services.get",
            "run.services.update",
        }
    ),
    "roles/iam.serviceAccountUser": frozenset({"iam.serviceAccounts.actAs"}),
    "roles/parametermanager.parameterViewer": frozenset(
        {
            "parametermanager.parameters.get",
            "parametermanager.parameters.list",
            "parametermanager.parameterVersions.get",
            "parametermanager.parameterVersions.list",
        }
    ),
}

# gRPC method -> permissions it requires.
# Sources:
#   Firestore: https://cloud.google.com/firestore/docs/security/iam
#     ("Required permissions for API methods"; Commit is resolved per write, see below)
#   Pub/Sub:   https://cloud.google.com/pubsub/docs/access-control ("Permissions")
#   Monitoring: https://cloud.google.com/monitoring/access-control
METHOD_PERMISSIONS: dict[str, frozenset[str]] = {
    "/google.firestore.v1.Firestore/BatchGetDocuments": frozenset({"datastore.entities.get"}),
    "/google.firestore.v1.Firestore/GetDocument": frozenset({"datastore.entities.get"}),
    "/google.firestore.v1.Firestore/ListDocuments": frozenset(
        {"datastore.entities.get", "datastore.entities.list"}
    ),
    "/google.firestore.v1.Firestore/RunQuery": frozenset(
        {"datastore.entities.get", "datastore.entities.list"}
    ),
    "/google.firestore.v1.Firestore/RunAggregationQuery": frozenset(
        {"datastore.entities.get", "datastore.entities.list"}
    ),
    "/google.firestore.v1.Firestore/BeginTransaction": frozenset({"datastore.databases.get"}),
    "/google.firestore.v1.Firestore/Rollback": frozenset({"datastore.databases.get"}),
    # Commit and BatchWrite: datastore.databases.get for an empty commit, plus what each
    # write needs (WRITE_PERMISSIONS).
    "/google.firestore.v1.Firestore/Commit": frozenset({"datastore.databases.get"}),
    "/google.firestore.v1.Firestore/BatchWrite": frozenset(),
    "/google.pubsub.v1.Publisher/Publish": frozenset({"pubsub.topics.publish"}),
    "/google.pubsub.v1.Publisher/GetTopic": frozenset({"pubsub.topics.get"}),
    "/google.pubsub.v1.Publisher/CreateTopic": frozenset({"pubsub.topics.create"}),
    "/google.pubsub.v1.Subscriber/GetSubscription": frozenset({"pubsub.subscriptions.get"}),
    "/google.pubsub.v1.Subscriber/CreateSubscription": frozenset(
        {"pubsub.subscriptions.create", "pubsub.topics.attachSubscription"}
    ),
    "/google.pubsub.v1.Subscriber/Pull": frozenset({"pubsub.subscriptions.consume"}),
    "/google.pubsub.v1.Subscriber/StreamingPull": frozenset({"pubsub.subscriptions.consume"}),
    "/google.pubsub.v1.Subscriber/Acknowledge": frozenset({"pubsub.subscriptions.consume"}),
    "/google.pubsub.v1.Subscriber/ModifyAckDeadline": frozenset({"pubsub.subscriptions.consume"}),
    "/google.monitoring.v3.MetricService/CreateTimeSeries": frozenset(
        {"monitoring.timeSeries.create"}
    ),
}

# A Firestore write's precondition -> the permissions it needs (same Firestore page):
# exists=false -> create; exists=true or an update time -> update; none -> both; delete.
WRITE_PERMISSIONS: dict[str, frozenset[str]] = {
    "create": frozenset({"datastore.entities.create"}),
    "update": frozenset({"datastore.entities.update"}),
    "upsert": frozenset({"datastore.entities.create", "datastore.entities.update"}),
    "delete": frozenset({"datastore.entities.delete"}),
}

# CREMA's own calls, from its documentation (no emulator runs it): it reads its
# configuration from Parameter Manager, reads the subscription backlog from Cloud Monitoring
# (KEDA's gcp-pubsub scaler) and updates the worker pool's instance count, acting as the
# worker pool's service account.
# Source: https://github.com/GoogleCloudPlatform/cloud-run-external-metrics-autoscaling
CREMA_PERMISSIONS: frozenset[str] = frozenset(
    {
        "parametermanager.parameterVersions.get",
        "monitoring.timeSeries.list",
        "run.workerpools.get",
        "run.workerpools.update",
        "iam.serviceAccounts.actAs",
    }
)
