/*
 * commands: correod's subcommands, one function each.  argv[0] is the
 * command's name ("run", "user", ...); each returns the process exit
 * status (0 ok, 1 failure, 2 usage).  Every command takes -c CONFIG
 * (default conf_default_path()).
 */
#ifndef CORREOD_COMMANDS_H
#define CORREOD_COMMANDS_H

int cmd_run(int argc, char **argv);           /* server.c */
int cmd_check_config(int argc, char **argv);  /* admin.c */
int cmd_init(int argc, char **argv);          /* admin.c */
int cmd_gencert(int argc, char **argv);       /* admin.c */
int cmd_user(int argc, char **argv);          /* users_cli.c */
int cmd_queue(int argc, char **argv);         /* queue_cli.c */
int cmd_dkim_keygen(int argc, char **argv);   /* dkim_cli.c */
int cmd_sendmail(int argc, char **argv);      /* sendmail.c */

#endif
