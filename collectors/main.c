/*
 * main.c — the tlsgate-collector program: a console process around collector_main
 * (collector.h), which does the work.
 */
#include "collector.h"

int main(int argc, char **argv) { return collector_main(argc, argv); }
