// gg-bench-attach: load a BPF object file, attach every program in it by its
// SEC() name (libbpf auto-attach), print "READY" and stay attached until
// SIGTERM/SIGINT. observer-bench uses it for the empty-program floor
// (build/bpf/floor.bpf.o); bpftool 7.1 has no "loadall ... autoattach".
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

int main(int argc, char** argv) {
  struct bpf_object* obj;
  struct bpf_program* prog;
  struct bpf_link* links[64];
  int n = 0, rc = 1;

  if (argc != 2) {
    fprintf(stderr, "usage: gg-bench-attach OBJ.bpf.o\n");
    return 2;
  }
  obj = bpf_object__open_file(argv[1], NULL);
  if (!obj) {
    fprintf(stderr, "gg-bench-attach: cannot open %s\n", argv[1]);
    return 1;
  }
  if (bpf_object__load(obj)) {
    fprintf(stderr, "gg-bench-attach: cannot load %s\n", argv[1]);
    goto out;
  }
  bpf_object__for_each_program(prog, obj) {
    if (n == 64) break;
    links[n] = bpf_program__attach(prog);
    if (!links[n]) {
      fprintf(stderr, "gg-bench-attach: cannot attach %s\n", bpf_program__name(prog));
      goto detach;
    }
    n++;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  printf("READY %d programs attached pid %d\n", n, (int)getpid());
  fflush(stdout);
  while (!g_stop) pause();
  rc = 0;
detach:
  while (n > 0) bpf_link__destroy(links[--n]);
out:
  bpf_object__close(obj);
  return rc;
}
