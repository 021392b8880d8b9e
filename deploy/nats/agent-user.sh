#!/bin/sh
# Prints the nats-server `users` entry of one agent with least privilege (nats-server 2.9).
# Usage: agent-user.sh <agent_id> '<password or $ENV_VAR>'  >> the users list of nats-server.conf
# The agent must connect with custom_inbox_prefix "_INBOX_<agent_id>".
set -eu
id="$1"
pass="$2"
case "$id" in
  *.*|*'*'*|*'>'*|*' '*|'') echo "agent id must be a subject-safe token" >&2; exit 2 ;;
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
            "\$JS.API.CONSUMER.INFO.PF_WORK.agent-$id",
            "\$JS.API.CONSUMER.INFO.PF_CTL.agent-$id",
            "\$JS.API.CONSUMER.MSG.NEXT.PF_WORK.agent-$id",
            "\$JS.API.CONSUMER.MSG.NEXT.PF_CTL.agent-$id",
            "\$JS.ACK.PF_WORK.agent-$id.>",
            "\$JS.ACK.PF_CTL.agent-$id.>",
            "\$JS.API.STREAM.INFO.KV_pf_agents",
            "\$JS.API.STREAM.INFO.KV_pf_flows",
            "\$JS.API.DIRECT.GET.KV_pf_flows.>",
            "\$JS.API.CONSUMER.CREATE.KV_pf_flows",
            "\$JS.API.CONSUMER.CREATE.KV_pf_flows.>",
            "\$JS.API.CONSUMER.DELETE.KV_pf_flows.>",
            "\$JS.FC.KV_pf_flows.>",
            "\$JS.API.STREAM.INFO.OBJ_pf_evidence",
            "\$JS.API.STREAM.MSG.GET.OBJ_pf_evidence",
            "\$JS.API.DIRECT.GET.OBJ_pf_evidence.>",
            "\$O.pf_evidence.>"
          ]
        }
        subscribe: { allow: ["_INBOX_$id.>"] }
      }
    }
CONF
