package main

import (
	"flag"

	"github.com/adrules/adrules/streams"
)

// kafkaFlags are the flags of every command that talks to Kafka.
type kafkaFlags struct {
	brokers                 string
	tls                     bool
	tlsCA, tlsCert, tlsKey  string
	saslMechanism, saslUser string
	topics                  streams.Topics
}

func (k *kafkaFlags) register(fs *flag.FlagSet, defBrokers string) {
	fs.StringVar(&k.brokers, "brokers", defBrokers, "Kafka bootstrap brokers, comma separated")
	fs.BoolVar(&k.tls, "tls", false, "connect with TLS")
	fs.StringVar(&k.tlsCA, "tls-ca", "", "PEM file of the CA to trust (implies --tls)")
	fs.StringVar(&k.tlsCert, "tls-cert", "", "PEM client certificate for mTLS (implies --tls)")
	fs.StringVar(&k.tlsKey, "tls-key", "", "PEM client key for mTLS")
	fs.StringVar(&k.saslMechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password from $ADRULES_SASL_PASSWORD)")
	fs.StringVar(&k.saslUser, "sasl-user", "", "SASL user name")
	t := streams.DefaultTopics()
	k.topics = t
	fs.StringVar(&k.topics.Metrics, "topic-metrics", t.Metrics, "metric events topic")
	fs.StringVar(&k.topics.Actions, "topic-actions", t.Actions, "external proposals topic")
	fs.StringVar(&k.topics.Proposals, "topic-proposals", t.Proposals, "internal proposals topic (stage 2 input)")
	fs.StringVar(&k.topics.Decisions, "topic-decisions", t.Decisions, "decisions topic")
	fs.StringVar(&k.topics.Verdicts, "topic-verdicts", t.Verdicts, "verdicts topic")
	fs.StringVar(&k.topics.DLQ, "topic-dlq", t.DLQ, "dead-letter topic")
	fs.StringVar(&k.topics.Config, "topic-config", t.Config, "rule set versions topic (compacted)")
	fs.StringVar(&k.topics.ConfigHistory, "topic-config-history", t.ConfigHistory, "rule set history topic")
	fs.StringVar(&k.topics.Status, "topic-status", t.Status, "node heartbeats topic (compacted)")
	fs.StringVar(&k.topics.Switches, "topic-switches", t.Switches, "where each input partition switched rule set versions (kept)")
	fs.StringVar(&k.topics.ShadowDecisions, "topic-shadow-decisions", t.ShadowDecisions, "the shadow rule set's decisions topic")
	fs.StringVar(&k.topics.ShadowProposals, "topic-shadow-proposals", t.ShadowProposals, "the shadow rule set's proposals topic (its stage 2 input)")
	fs.StringVar(&k.topics.ShadowVerdicts, "topic-shadow-verdicts", t.ShadowVerdicts, "the shadow rule set's verdicts topic")
}

// connection is the streams.Connection the flags name: brokers, TLS, SASL
// (the password from $ADRULES_SASL_PASSWORD) and topics.
func (k *kafkaFlags) connection(env map[string]string) streams.Connection {
	return streams.Connection{
		Brokers: streams.ParseBrokers(k.brokers),
		Security: streams.Security{TLS: k.tls, TLSCA: k.tlsCA, TLSCert: k.tlsCert, TLSKey: k.tlsKey,
			SASLMechanism: k.saslMechanism, SASLUser: k.saslUser, SASLPassword: env["ADRULES_SASL_PASSWORD"]},
		Topics: k.topics,
	}
}
