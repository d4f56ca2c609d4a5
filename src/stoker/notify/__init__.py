"""`[notify.NAME]` webhooks: what happened (a program gave up, a crash loop, a job that failed
for good, a schedule slot that did not run), POSTed as JSON.

- `rules`: pure: which program changes count, crash-loop detection, the payloads and their words.
- `webhook`: one webhook's bounded queue and the task that delivers it, with retries.
- `notifier`: the daemon's side: watches the supervisor and the event bus, feeds the webhooks.
"""
