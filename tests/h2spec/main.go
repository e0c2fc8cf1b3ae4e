// keel's command line for the h2spec HTTP/2 conformance library (github.com/summerwind/h2spec,
// MIT). The shared source copy in ../shared/tools/h2spec-src has the library but lost its own
// cmd/h2spec/ (its .gitignore line "h2spec" matched the directory); scripts/check-h2spec.sh
// builds this file against that library with ../shared/tools/build-h2spec.sh. Same flags as
// upstream's command, read with the standard library.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/summerwind/h2spec"
	"github.com/summerwind/h2spec/config"
)

func main() {
	host := flag.String("h", "127.0.0.1", "target host")
	port := flag.Int("p", 0, "target port (default 80, or 443 with -t)")
	path := flag.String("P", "/", "target path")
	timeout := flag.Int("o", 2, "seconds each test case waits")
	maxHeaderLen := flag.Int("max-header-length", 4000, "maximum length of an HTTP header")
	junit := flag.String("j", "", "write a JUnit report to this file")
	strict := flag.Bool("S", false, "also run the strict test cases")
	dryRun := flag.Bool("dryrun", false, "list the test cases only")
	useTLS := flag.Bool("t", false, "connect over TLS")
	ciphers := flag.String("c", "", "colon-separated TLS cipher names")
	insecure := flag.Bool("k", false, "do not verify the server's certificate")
	verbose := flag.Bool("v", false, "verbose log")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println("Version: 2.6.0 (keel driver)")
		return
	}
	if *port == 0 {
		*port = 80
		if *useTLS {
			*port = 443
		}
	}
	c := &config.Config{
		Host:         *host,
		Port:         *port,
		Path:         *path,
		Timeout:      time.Duration(*timeout) * time.Second,
		MaxHeaderLen: *maxHeaderLen,
		JUnitReport:  *junit,
		Strict:       *strict,
		DryRun:       *dryRun,
		TLS:          *useTLS,
		Ciphers:      *ciphers,
		Insecure:     *insecure,
		Verbose:      *verbose,
		Sections:     flag.Args(),
	}
	ok, err := h2spec.Run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}
