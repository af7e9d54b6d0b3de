// Command kfakeserver runs franz-go's fake Kafka (kfake) as a process of
// its own, the broker that `make it` runs the Kafka tests against with
// $KAFKA_BROKERS. It is the cluster kafkatest.Brokers starts in-process
// (kfake.NewCluster with the same options), listening on 127.0.0.1:
//
//	kfakeserver [--port N] [--brokers N]
//
// prints the brokers' addresses on one line, comma separated (the value of
// KAFKA_BROKERS), and runs until SIGINT or SIGTERM. Its data lives in
// memory only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	port := flag.Int("port", 0, "port of the first broker, the others on the ports after it (default 0: each broker picks a free port)")
	brokers := flag.Int("brokers", 1, "number of brokers")
	flag.Parse()
	if *brokers < 1 || *port < 0 || *port+*brokers-1 > 65535 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	opts := []kfake.Opt{kfake.NumBrokers(*brokers)}
	if *port != 0 {
		var ports []int
		for i := range *brokers {
			ports = append(ports, *port+i)
		}
		opts = append(opts, kfake.Ports(ports...))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfakeserver:", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Println(strings.Join(c.ListenAddrs(), ","))
	<-ctx.Done()
}
