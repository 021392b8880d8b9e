#!/bin/sh
# Prints the nats-server `users` entry of one agent with least privilege, for a server that
# authenticates with users and passwords instead of operator mode (nats-server 2.9). The same
# permissions as the user JWTs `phonefarm-coordinator agent enroll` issues (a coordinator test
# compares the two).
# Usage: agent-user.sh <agent_id> '<password or $ENV_VAR>'  >> the users list of a server config
# The agent must connect with custom_inbox_prefix "_INBOX_<agent_id>".
set -eu
id="$1"
pass="$2"
case "$id" in
  ''|*[!A-Za-z0-9_-]*) echo "agent id must be ASCII letters, digits, '-' and '_'" >&2; exit 2 ;;
esac
cat <<CONF
    {
      user: "$id"
      password: $pass
      permissions: {
        publish: {
          allow: [
            "pf.evt.$id.>",
            "\$KV.pf_agents.$id",
            "\$JS.API.STREAM.INFO.KV_pf_agents",
            "\$JS.API.CONSUMER.INFO.PF_WORK.agent-$id",
            "\$JS.API.CONSUMER.MSG.NEXT.PF_WORK.agent-$id",
            "\$JS.ACK.PF_WORK.agent-$id.>",
            "\$JS.API.CONSUMER.INFO.PF_CTL.agent-$id",
            "\$JS.API.CONSUMER.MSG.NEXT.PF_CTL.agent-$id",
            "\$JS.ACK.PF_CTL.agent-$id.>",
            "\$JS.API.STREAM.INFO.KV_pf_flows",
            "\$JS.API.CONSUMER.CREATE.KV_pf_flows.flows-$id",
            "\$JS.API.CONSUMER.INFO.KV_pf_flows.flows-$id",
            "\$JS.API.CONSUMER.MSG.NEXT.KV_pf_flows.flows-$id",
            "\$JS.API.CONSUMER.DELETE.KV_pf_flows.flows-$id",
            "\$JS.API.STREAM.INFO.OBJ_pf_evidence_$id",
            "\$JS.API.STREAM.MSG.GET.OBJ_pf_evidence_$id",
            "\$JS.API.DIRECT.GET.OBJ_pf_evidence_$id.>",
            "\$JS.API.STREAM.PURGE.OBJ_pf_evidence_$id",
            "\$O.pf_evidence_$id.>",
            "pf.screen.$id.>"
          ]
        }
        subscribe: { allow: ["_INBOX_$id.>", "pf.watch.$id"] }
      }
    }
CONF
