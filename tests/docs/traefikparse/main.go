// Command traefikparse checks the Traefik configuration shown in the documentation with
// Traefik's own code: every fenced block tagged `yaml traefik-dynamic` goes through the file
// provider (its Go templating, then its decoder), every `yaml traefik-static` block through the
// static configuration's decoder, and every `text labels` block through the label decoder the
// docker provider uses. An unknown key is an error in all three.
//
// It is built inside a copy of the Traefik module (scripts/test-docs.sh), so it uses exactly the
// Traefik version the suites run.
//
//	traefikparse [-expect-failure] FILE.md...
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/traefik/paerser/file"
	"github.com/traefik/traefik/v3/pkg/config/label"
	"github.com/traefik/traefik/v3/pkg/config/static"
	fileprovider "github.com/traefik/traefik/v3/pkg/provider/file"
)

type block struct {
	page string
	line int
	tag  string
	text string
}

// blocks returns the fenced blocks of a Markdown page whose info string is one we check, with
// the fence's indentation removed from each line.
func blocks(page string) ([]block, error) {
	f, err := os.Open(page)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []block
	var cur *block
	indent := 0
	var body []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if cur == nil {
			if info, ok := strings.CutPrefix(trimmed, "```"); ok {
				words := strings.Fields(info)
				tag := ""
				if len(words) == 2 {
					tag = words[0] + " " + words[1]
				}
				cur = &block{page: page, line: n, tag: tag}
				indent = len(line) - len(trimmed)
				body = nil
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			cur.text = strings.Join(body, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
			continue
		}
		cut := min(len(line)-len(strings.TrimLeft(line, " ")), indent)
		body = append(body, line[cut:])
	}
	return out, sc.Err()
}

func checkDynamic(b block, dir string) error {
	path := filepath.Join(dir, fmt.Sprintf("block-%d.yml", b.line))
	if err := os.WriteFile(path, []byte(b.text), 0o600); err != nil {
		return err
	}
	p := &fileprovider.Provider{Filename: path}
	conf, err := p.CreateConfiguration(context.Background(), path, nil, nil)
	if err != nil {
		return err
	}
	if conf == nil || conf.HTTP == nil || len(conf.HTTP.Middlewares)+len(conf.HTTP.Routers)+len(conf.HTTP.Services) == 0 {
		return fmt.Errorf("decoded to an empty HTTP configuration")
	}
	return nil
}

func checkStatic(b block) error {
	var conf static.Configuration
	if err := file.DecodeContent(b.text, ".yaml", &conf); err != nil {
		return err
	}
	if conf.EntryPoints == nil && conf.Experimental == nil && conf.Providers == nil {
		return fmt.Errorf("decoded to an empty static configuration")
	}
	return nil
}

func checkLabels(b block) error {
	labels := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(b.text), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
		if !ok {
			return fmt.Errorf("not a label: %q", l)
		}
		// The documentation shows labels as a compose file holds them: $$ is a literal $.
		labels[k] = strings.ReplaceAll(v, "$$", "$")
	}
	conf, err := label.DecodeConfiguration(labels)
	if err != nil {
		return err
	}
	if conf.HTTP == nil || len(conf.HTTP.Middlewares)+len(conf.HTTP.Routers) == 0 {
		return fmt.Errorf("decoded to an empty HTTP configuration")
	}
	return nil
}

func main() {
	expectFailure := flag.Bool("expect-failure", false, "succeed only if some block is refused (the check's own negative test)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "traefikparse-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer os.RemoveAll(dir)
	checked, failed := 0, 0
	for _, page := range flag.Args() {
		bs, err := blocks(page)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, b := range bs {
			var err error
			switch b.tag {
			case "yaml traefik-dynamic":
				err = checkDynamic(b, dir)
			case "yaml traefik-static":
				err = checkStatic(b)
			case "text labels":
				err = checkLabels(b)
			default:
				continue
			}
			checked++
			if err != nil {
				failed++
				fmt.Printf("%s:%d (%s): %v\n", b.page, b.line, b.tag, err)
			}
		}
	}
	fmt.Printf("traefikparse: %d blocks checked, %d refused\n", checked, failed)
	switch {
	case checked == 0:
		os.Exit(1)
	case *expectFailure && failed == 0:
		fmt.Println("traefikparse: expected a refusal, got none")
		os.Exit(1)
	case !*expectFailure && failed > 0:
		os.Exit(1)
	}
}
