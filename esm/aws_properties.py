"""The properties AWS defines for the resource types esm reads from a template, as data.

They let :mod:`esm.templates` tell a property AWS has but esm does not run ("supported by AWS,
not by esm": warned about and skipped, or refused with ``--strict``) from one AWS does not have
either (an error: "check the spelling"). Sources: the CloudFormation template reference
(``aws-resource-lambda-function``, ``aws-resource-lambda-eventsourcemapping``,
``aws-resource-lambda-eventinvokeconfig``, ``aws-resource-lambda-layerversion``,
``aws-resource-sqs-queue``, ``aws-resource-kinesis-stream``, ``aws-resource-dynamodb-table``,
``aws-resource-sns-topic``, ``aws-resource-sns-subscription``, ``aws-resource-s3-bucket``,
``aws-resource-events-eventbus``) and the SAM specification (``sam-resource-function``,
``sam-property-function-sqs``, ``-kinesis``, ``-dynamodb``, ``sam-resource-layerversion``,
``sam-resource-simpletable``). A property AWS adds later reads as a spelling error until it is
added here.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FUNCTION_COMMON = _names(
    "Architectures CapacityProviderConfig CodeSigningConfigArn Description DurableConfig "
    "Environment EphemeralStorage FileSystemConfigs FunctionName FunctionScalingConfig Handler "
    "ImageConfig KmsKeyArn Layers LoggingConfig MemorySize PackageType PublishToLatestPublished "
    "RecursiveLoop ReservedConcurrentExecutions Role Runtime RuntimeManagementConfig SnapStart "
    "Tags TenancyConfig Timeout VpcConfig"
)
_STREAM_EVENT = _names(
    "Stream BatchSize BisectBatchOnFunctionError DestinationConfig Enabled FilterCriteria "
    "FunctionResponseTypes KmsKeyArn MaximumBatchingWindowInSeconds MaximumRecordAgeInSeconds "
    "MaximumRetryAttempts MetricsConfig ParallelizationFactor ProvisionedPollerConfig "
    "StartingPosition StartingPositionTimestamp TumblingWindowInSeconds"
)

AWS_PROPERTIES: dict[str, frozenset[str]] = {
    "AWS::Serverless::Function": _FUNCTION_COMMON
    | _names(
        "AssumeRolePolicyDocument AutoPublishAlias AutoPublishAliasAllProperties "
        "AutoPublishCodeSha256 CodeUri DeadLetterQueue DeploymentPreference EventInvokeConfig "
        "Events FunctionUrlConfig ImageUri InlineCode PermissionsBoundary Policies PropagateTags "
        "ProvisionedConcurrencyConfig RolePath SnapStart SourceKMSKeyArn Tracing "
        "VersionDeletionPolicy VersionDescription"
    ),
    "AWS::Lambda::Function": _FUNCTION_COMMON | _names("Code DeadLetterConfig TracingConfig"),
    "AWS::Lambda::EventSourceMapping": _names(
        "AmazonManagedKafkaEventSourceConfig BatchSize BisectBatchOnFunctionError "
        "DestinationConfig DocumentDBEventSourceConfig Enabled EventSourceArn FilterCriteria "
        "FunctionName FunctionResponseTypes KmsKeyArn LoggingConfig MaximumBatchingWindowInSeconds "
        "MaximumRecordAgeInSeconds MaximumRetryAttempts MetricsConfig ParallelizationFactor "
        "ProvisionedPollerConfig Queues ScalingConfig SelfManagedEventSource "
        "SelfManagedKafkaEventSourceConfig SourceAccessConfigurations StartingPosition "
        "StartingPositionTimestamp Tags Topics TumblingWindowInSeconds"
    ),
    "AWS::Lambda::EventInvokeConfig": _names(
        "DestinationConfig FunctionName MaximumEventAgeInSeconds MaximumRetryAttempts Qualifier"
    ),
    # a SAM function's Events, by Type
    "SQS": _names(
        "Queue BatchSize Enabled FilterCriteria FunctionResponseTypes KmsKeyArn "
        "MaximumBatchingWindowInSeconds MetricsConfig ProvisionedPollerConfig ScalingConfig"
    ),
    "Kinesis": _STREAM_EVENT,
    "DynamoDB": _STREAM_EVENT,
    "AWS::SQS::Queue": _names(
        "ContentBasedDeduplication DeduplicationScope DelaySeconds FifoQueue FifoThroughputLimit "
        "KmsDataKeyReusePeriodSeconds KmsMasterKeyId MaximumMessageSize MessageRetentionPeriod "
        "QueueName ReceiveMessageWaitTimeSeconds RedriveAllowPolicy RedrivePolicy "
        "SqsManagedSseEnabled Tags VisibilityTimeout"
    ),
    "AWS::Kinesis::Stream": _names(
        "DesiredShardLevelMetrics MaxRecordSizeInKiB Name RetentionPeriodHours ShardCount "
        "StreamEncryption StreamModeDetails Tags WarmThroughputMiBps"
    ),
    "AWS::DynamoDB::Table": _names(
        "AttributeDefinitions BillingMode ContributorInsightsSpecification "
        "DeletionProtectionEnabled GlobalSecondaryIndexes ImportSourceSpecification KeySchema "
        "KinesisStreamSpecification LocalSecondaryIndexes OnDemandThroughput "
        "PointInTimeRecoverySpecification ProvisionedThroughput ResourcePolicy SSESpecification "
        "StreamSpecification TableClass TableName Tags TimeToLiveSpecification WarmThroughput"
    ),
    "AWS::Serverless::SimpleTable": _names(
        "PointInTimeRecoverySpecification PrimaryKey ProvisionedThroughput SSESpecification "
        "TableName Tags"
    ),
    "AWS::Serverless::LayerVersion": _names(
        "CompatibleArchitectures CompatibleRuntimes ContentUri Description LayerName LicenseInfo "
        "PublishLambdaVersion RetentionPolicy"
    ),
    "AWS::Lambda::LayerVersion": _names(
        "CompatibleArchitectures CompatibleRuntimes Content Description LayerName LicenseInfo"
    ),
    "AWS::SNS::Topic": _names(
        "ArchivePolicy ContentBasedDeduplication DataProtectionPolicy DeliveryStatusLogging "
        "DisplayName FifoThroughputScope FifoTopic KmsMasterKeyId SignatureVersion Subscription "
        "Tags TopicName TracingConfig"
    ),
    "AWS::SNS::Subscription": _names(
        "DeliveryPolicy Endpoint FilterPolicy FilterPolicyScope Protocol RawMessageDelivery "
        "RedrivePolicy Region ReplayPolicy SubscriptionRoleArn TopicArn"
    ),
    "AWS::S3::Bucket": _names(
        "AbacStatus AccelerateConfiguration AccessControl AnalyticsConfigurations "
        "BucketEncryption BucketName CorsConfiguration IntelligentTieringConfigurations "
        "InventoryConfigurations LifecycleConfiguration LoggingConfiguration "
        "MetadataConfiguration MetadataTableConfiguration MetricsConfigurations "
        "NotificationConfiguration ObjectLockConfiguration ObjectLockEnabled OwnershipControls "
        "PublicAccessBlockConfiguration ReplicationConfiguration Tags VersioningConfiguration "
        "WebsiteConfiguration"
    ),
    "AWS::Events::EventBus": _names(
        "DeadLetterConfig Description EventSourceName KmsKeyIdentifier LogConfig Name Policy Tags"
    ),
}


# the Type values of a SAM function's Events (sam-property-function-eventsource)
SAM_EVENT_TYPES = frozenset(
    "AlexaSkill Api CloudWatchEvent CloudWatchLogs Cognito DocumentDB DynamoDB EventBridgeRule "
    "HttpApi IoTRule Kinesis MQ MSK S3 Schedule ScheduleV2 SelfManagedKafka SNS SQS".split()
)


def aws_has(kind: str, name: str) -> bool:
    """Whether AWS defines property ``name`` for ``kind`` (a resource type or SAM event type);
    True for types not listed here (esm cannot tell)."""
    known = AWS_PROPERTIES.get(kind)
    return known is None or name in known
