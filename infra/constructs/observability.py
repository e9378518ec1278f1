"""Alarms that page someone, and one dashboard per environment.

Logs, metrics and traces come from powertools inside the functions (POWERTOOLS_* variables set in
infra/constructs/functions.py) and from the API stage (access logs, X-Ray)."""

from __future__ import annotations

from typing import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig

PERIOD = Duration.minutes(5)


class Observability(Construct):
    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, api: apigw.RestApiBase, stage: str,
                 functions: Mapping[str, lambda_.Function], authorizer: lambda_.IFunction,
                 dead_letters: sqs.IQueue, table: dynamodb.ITable) -> None:
        super().__init__(scope, id)
        self.topic = self._topic(config)
        api_dimensions = {"ApiName": api.rest_api_name, "Stage": stage}
        server_errors = cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name="5XXError",
                                          dimensions_map=api_dimensions, statistic="Sum", period=PERIOD)
        throttles = cloudwatch.MathExpression(
            label="Lambda throttles (all functions)", period=PERIOD,
            expression=" + ".join(f"FILL(t{i}, 0)" for i in range(len(functions))),
            using_metrics={f"t{i}": fn.metric_throttles(statistic="Sum", period=PERIOD)
                           for i, fn in enumerate(functions.values())},
        )
        self.alarms = [
            self._alarm("ServerErrors", server_errors,
                        "The API answered 5xx (Lambda errors, timeouts, throttled backends)"),
            self._alarm("Throttles", throttles, "Lambda throttled mlreg functions (account concurrency exhausted)"),
            self._alarm("AuthorizerErrors", authorizer.metric_errors(statistic="Sum", period=PERIOD),
                        "The token authorizer failed: every token-authorised request gets 500"),
            self._alarm("PublisherDeadLetters",
                        dead_letters.metric_approximate_number_of_messages_visible(statistic="Maximum", period=PERIOD),
                        "Table changes the publisher could not turn into events (see the queue's messages)"),
        ]
        self.dashboard = self._dashboard(config, api_dimensions, functions, dead_letters, table)

    def _topic(self, config: EnvironmentConfig) -> sns.ITopic:
        if config.alarm_topic_arn:
            return sns.Topic.from_topic_arn(self, "AlarmTopic", config.alarm_topic_arn)
        # Not KMS-encrypted: CloudWatch cannot publish to a topic under the AWS-managed SNS key, a
        # customer key costs a monthly fee at rest, and the messages carry alarm states only.
        topic = sns.Topic(self, "AlarmTopic", display_name=f"mlreg {config.name} alarms", enforce_ssl=True)
        for email in config.alarm_emails:
            topic.add_subscription(subscriptions.EmailSubscription(email))
        return topic

    def _alarm(self, id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self, id, metric=metric, alarm_description=description,
            threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        return alarm

    def _dashboard(self, config: EnvironmentConfig, api_dimensions: dict, functions: Mapping[str, lambda_.Function],
                   dead_letters: sqs.IQueue, table: dynamodb.ITable) -> cloudwatch.Dashboard:
        def api_metric(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace="AWS/ApiGateway", metric_name=name, dimensions_map=api_dimensions,
                                     statistic=statistic, period=PERIOD)

        def per_function(metric: str, statistic: str) -> list[cloudwatch.IMetric]:
            return [fn.metric(metric, statistic=statistic, period=PERIOD, label=name) for name, fn in functions.items()]

        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"mlreg-{config.name}")
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24, height=3),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="API requests and errors", width=12,
                                   left=[api_metric("Count"), api_metric("4XXError"), api_metric("5XXError")]),
            cloudwatch.GraphWidget(title="API latency (p50, p99)", width=12,
                                   left=[api_metric("Latency", "p50"), api_metric("Latency", "p99"),
                                         api_metric("IntegrationLatency", "p99")]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Invocations", width=8, left=per_function("Invocations", "Sum")),
            cloudwatch.GraphWidget(title="Errors", width=8, left=per_function("Errors", "Sum")),
            cloudwatch.GraphWidget(title="Duration p99", width=8, left=per_function("Duration", "p99")),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Throttles and concurrency", width=12,
                                   left=per_function("Throttles", "Sum"),
                                   right=per_function("ConcurrentExecutions", "Maximum")),
            cloudwatch.GraphWidget(title="Publisher dead letters", width=12,
                                   left=[dead_letters.metric_approximate_number_of_messages_visible(period=PERIOD)]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Table capacity consumed", width=12,
                                   left=[table.metric_consumed_read_capacity_units(period=PERIOD),
                                         table.metric_consumed_write_capacity_units(period=PERIOD)]),
            cloudwatch.GraphWidget(title="Table throttled requests and errors", width=12,
                                   left=[table.metric("ThrottledRequests", statistic="Sum", period=PERIOD),
                                         table.metric_system_errors_for_operations(period=PERIOD),
                                         table.metric_user_errors(period=PERIOD)]),
        )
        return dashboard
