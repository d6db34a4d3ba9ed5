#!/bin/sh
# Best practice (a): push Oceanus "TaskManager load too high" alarms to a WeCom group robot.
# Creates, on the built-in `default` cloud service event set, the rule `oceanus-tm-load` and
# its `notify` target `wecom`. Talks to $EVENTBUS_SERVER (default http://127.0.0.1:8080).
#   WECOM_URL  the robot's webhook (default: the local stand-in, wecom_robot_standin.py)
#   EVENTBUS   the eventbus binary (default: eventbus on PATH)
set -eu
EVENTBUS=${EVENTBUS:-eventbus}
WECOM_URL=${WECOM_URL:-http://127.0.0.1:9200/cgi-bin/webhook/send?key=demo-key}

"$EVENTBUS" rules create default oceanus-tm-load \
  --description "Oceanus TaskManager CPU load too high: alarm and recovery" \
  --pattern '{"source": ["oceanus.cloud.tencent"],
              "type": ["oceanus:ErrorEvent:OceanusTaskmanagerLoadTooHigh"]}'

"$EVENTBUS" targets create default oceanus-tm-load --body "{
  \"name\": \"wecom\", \"type\": \"notify\",
  \"notify\": {\"provider\": \"wecom\", \"url\": \"$WECOM_URL\", \"format\": \"markdown\"},
  \"retry\": {\"max_attempts\": 10, \"initial_backoff_ms\": 1000},
  \"dead_letter\": {\"mode\": \"dlq\"}}"
