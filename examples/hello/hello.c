/* The demo program: a static binary that greets from inside its FROM-scratch image. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char cwd[256];
    printf("Hello from a FROM-scratch image built by zeroimage!\n");
    printf("I am %s, pid %d, working in %s.\n", argv[0], (int)getpid(), getcwd(cwd, sizeof cwd) ? cwd : "?");
    for (int i = 1; i < argc; i++) printf("argument %d: %s\n", i, argv[i]);
    return 0;
}
