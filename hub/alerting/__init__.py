"""Alerts that reach people: the configuration file, the sinks (webhook, Telegram, Discord,
Slack), their delivery, the record of what each sink already has, and the alert history.

The alerts themselves are computed in `hub.analytics.alerts` (pure); everything here is
I/O around them, run by `ingest` (or `serve`) through `hub.alerting.service.Alerting`.
"""
