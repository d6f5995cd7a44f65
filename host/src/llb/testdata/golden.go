//go:build ignore

// Writes the golden LLB definitions of host/src/llb/testdata/*.golden, built
// with BuildKit's own Go builder (client/llb), so that the Rust builder is
// checked byte for byte against the reference implementation.
//
// It is not part of any build. To regenerate, from an empty folder:
//
//	go mod init golden
//	go get github.com/moby/buildkit@v0.34.2
//	go run /path/to/golden.go /path/to/host/src/llb/testdata
//
// Each graph here has a twin of the same name in host/src/llb/tests/mod.rs.
package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/buildkit/client/llb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"
)

var amd64 = ocispecs.Platform{OS: "linux", Architecture: "amd64"}

const debian = "docker.io/library/debian:bookworm"

type graph struct {
	name  string
	state func() llb.State
}

func graphs() []graph {
	return []graph{
		{"image_only", func() llb.State {
			return llb.Image("docker.io/library/alpine:latest")
		}},
		{"image_short_name_local_arm64", func() llb.State {
			return llb.Image("debian:bookworm",
				llb.ResolveModePreferLocal,
				llb.Platform(ocispecs.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}),
				llb.WithCustomName("Resolving image debian:bookworm"))
		}},
		{"image_digest_force_pull", func() llb.State {
			return llb.Image("busybox@sha256:"+strings.Repeat("ab", 32), llb.ResolveModeForcePull)
		}},
		{"exec_scratch_mount", func() llb.State {
			base := llb.Image(debian, llb.Platform(amd64))
			run := base.Run(llb.Args([]string{"sh", "-c", "echo hi > /out/x"}),
				llb.AddMount("/out", llb.Scratch()))
			return run.GetMount("/out")
		}},
		{"exec_everything", func() llb.State {
			base := llb.Image(debian, llb.Platform(amd64)).
				AddEnv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").
				AddEnv("LANG", "C.UTF-8").
				Dir("/work").
				User("nobody").
				Network(llb.NetModeNone)
			tools := llb.Image("docker.io/library/busybox:latest", llb.Platform(amd64))
			run := base.Run(
				llb.Args([]string{"/bin/sh", "-c", "ls /tools > /out/list"}),
				llb.AddEnv("EXTRA", "1"),
				llb.Dir("sub"),
				llb.WithProxy(llb.ProxyEnv{HTTPProxy: "http://proxy:3128", NoProxy: "localhost"}),
				llb.IgnoreCache,
				llb.WithCustomName("List the tools"),
				llb.AddMount("/tools", tools, llb.Readonly, llb.SourcePath("/bin")),
				llb.AddMount("/tmp", llb.Scratch(), llb.Tmpfs(llb.TmpfsSize(64<<20))),
				llb.AddMount("/var/cache/apt", llb.Scratch(), llb.Tmpfs()),
				llb.AddMount("/out", llb.Scratch()),
			)
			return run.Root()
		}},
		{"exec_empty_proxy", func() llb.State {
			base := llb.Image(debian, llb.Platform(amd64))
			return base.Run(llb.Args([]string{"apt-get", "-o", "Acquire::Retries=3", "update"}),
				llb.WithProxy(llb.ProxyEnv{}),
				llb.IgnoreCache,
				llb.WithCustomName("Updating package database")).Root()
		}},
		{"env_replace_order", func() llb.State {
			base := llb.Image(debian, llb.Platform(amd64)).
				AddEnv("A", "1").AddEnv("B", "2").AddEnv("A", "3").AddEnv("C", "")
			return base.Run(llb.Args([]string{"env"})).Root()
		}},
		{"file_chain_on_scratch", func() llb.State {
			return llb.Scratch().File(
				llb.Mkdir("/a", 0o755, llb.WithParents(true)).
					Mkfile("/a/hello", 0o644, []byte("hello\n")).
					Rm("/a/gone", llb.WithAllowNotFound(true), llb.WithAllowWildcard(true)),
				llb.WithCustomName("Make a file"))
		}},
		{"file_copy_options", func() llb.State {
			base := llb.Image(debian, llb.Platform(amd64)).Dir("/work")
			tools := llb.Image("docker.io/library/busybox:latest", llb.Platform(amd64)).Dir("/bin")
			created := time.Unix(1700000000, 5)
			return base.File(
				llb.Copy(tools, "busybox", "bin/", &llb.CopyInfo{
					CreateDestPath:      true,
					FollowSymlinks:      true,
					CopyDirContentsOnly: true,
					AllowWildcard:       true,
					AllowEmptyWildcard:  true,
					Mode:                &llb.ChmodOpt{Mode: 0o755},
				}).
					Mkdir("data/.", 0o700, llb.WithUser("app:staff"), llb.WithCreatedTime(created)).
					Mkfile("/etc/motd", 0o644, []byte("patched"), llb.WithUIDGID(1000, 1000)).
					Copy(tools, "/sh", "/bin/sh", llb.WithUser("0")))
		}},
		{"copa_probe", func() llb.State {
			image := llb.Image(debian, llb.Platform(amd64), llb.ResolveModePreferLocal)
			tool := llb.Image("ghcr.io/project-copacetic/copacetic/debian:12-slim", llb.Platform(amd64))
			update := tool.Run(llb.Args([]string{"apt-get", "-o", "Acquire::Retries=3", "update"}),
				llb.WithProxy(llb.ProxyEnv{}), llb.IgnoreCache,
				llb.WithCustomName("Updating package database")).Root()
			busybox := update.Run(llb.Args([]string{"apt-get", "-o", "Acquire::Retries=3", "install", "busybox-static"}),
				llb.WithProxy(llb.ProxyEnv{}),
				llb.WithCustomName("Installing busybox")).Root()
			withBusybox := image.File(llb.Copy(busybox, "/bin/busybox", "/bin/busybox"))
			withOut := withBusybox.File(llb.Mkdir("/copa-out", 0o744, llb.WithParents(true)))
			probe := withOut.
				AddEnv("DPKG_STATUS_PATH", "/var/lib/dpkg/status").
				AddEnv("RESULTS_PATH", "/copa-out").
				Run(llb.Args([]string{"/bin/busybox", "sh", "-c", "echo 1 > /copa-out/statusd_type"}),
					llb.AddMount("/copa-out", llb.Scratch()))
			return probe.GetMount("/copa-out")
		}},
		{"copa_install", func() llb.State {
			image := llb.Image(debian, llb.Platform(amd64), llb.ResolveModePreferLocal).
				AddEnv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
			update := image.Run(llb.Args([]string{"apt-get", "-o", "Acquire::Retries=3", "update"}),
				llb.WithProxy(llb.ProxyEnv{}), llb.IgnoreCache,
				llb.WithCustomName("Updating package database")).Root()
			install := update.Run(llb.Args([]string{"sh", "-c", "apt-get install -y openssl && apt-get clean -y"}),
				llb.WithProxy(llb.ProxyEnv{}),
				llb.WithCustomName("Installing 1 security updates")).Root()
			manifest := install.Dir("/copa-out").Run(llb.Args([]string{"sh", "-c", "grep '^Package:' /var/lib/dpkg/status >> results.manifest"}),
				llb.WithCustomName("Generating package manifest")).Root()
			patch := llb.Diff(update, install, llb.WithCustomName("Patch layer"))
			check := llb.Diff(install, manifest)
			return llb.Merge([]llb.State{image, patch, check})
		}},
		{"merge_diff_edge_cases", func() llb.State {
			image := llb.Image(debian, llb.Platform(amd64))
			file := llb.Scratch().File(llb.Mkfile("/x", 0o600, []byte("x")))
			// Scratch inputs are dropped; a merge of one input is that input.
			single := llb.Merge([]llb.State{llb.Scratch(), file})
			upperScratch := llb.Diff(image, llb.Scratch())
			lowerScratch := llb.Diff(llb.Scratch(), file)
			return llb.Merge([]llb.State{image, single, upperScratch, lowerScratch, image})
		}},
		{"dedup_same_op_twice", func() llb.State {
			a := llb.Image(debian, llb.Platform(amd64), llb.WithCustomName("first"))
			b := llb.Image(debian, llb.Platform(amd64), llb.WithCustomName("second"))
			return a.Run(llb.Args([]string{"true"}),
				llb.AddMount("/a", a, llb.Readonly),
				llb.AddMount("/b", b, llb.Readonly)).Root()
		}},
		{"image_config_applied", func() llb.State {
			config := []byte(`{"architecture":"arm","os":"linux","variant":"v7",` +
				`"config":{"Env":["PATH=/usr/bin:/bin","EMPTY=","NOVALUE","=ignored"],"WorkingDir":"/srv"}}`)
			st, err := llb.Image(debian).WithImageConfig(config)
			if err != nil {
				panic(err)
			}
			return st.Run(llb.Args([]string{"pwd"})).Root()
		}},
	}
}

func main() {
	dir := os.Args[1]
	for _, g := range graphs() {
		def, err := g.state().Marshal(context.Background(), llb.Platform(amd64))
		if err != nil {
			panic(fmt.Sprintf("%s: %v", g.name, err))
		}
		// Go's builder also fills Definition.Source with an empty location
		// list per op. copa sends no source maps: the field is not hashed and
		// the daemon only reads it to point errors at source lines.
		pbDef := def.ToPB()
		pbDef.Source = nil
		dt, err := proto.MarshalOptions{Deterministic: true}.Marshal(pbDef)
		if err != nil {
			panic(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# %s: written by golden.go with BuildKit v0.34.2 client/llb\n", g.name)
		for _, op := range def.Def {
			fmt.Fprintf(&b, "op %s\n", digest.FromBytes(op))
		}
		fmt.Fprintf(&b, "definition %s\n", hex.EncodeToString(dt))
		if err := os.WriteFile(filepath.Join(dir, g.name+".golden"), []byte(b.String()), 0o644); err != nil {
			panic(err)
		}
	}
}
