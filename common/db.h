/* SQLite helpers shared by the stages that keep state (ns-log, ns-beam):
 * open with the house pragmas, versioned migrations, transactions.
 * Every function reports failure by its return value; none prints. */
#ifndef NS_DB_H
#define NS_DB_H

#include <stddef.h>
#include <sqlite3.h>

/*
 * Open (creating if needed) the database at path in WAL mode with
 * busy_timeout 5000 ms, foreign keys on and synchronous FULL (sync_full
 * non-zero) or NORMAL.  migrations[i] is the SQL (one or more statements)
 * that takes the schema from user_version i to i + 1; each migration not
 * yet applied runs in its own transaction together with the update of
 * PRAGMA user_version.  A database whose user_version is above nmigrations
 * was written by a newer program and is refused.
 * Returns the handle, or NULL with a message ("path: reason") in err.
 */
sqlite3 *db_open(const char *path, const char *const *migrations,
    int nmigrations, int sync_full, char *err, size_t errlen);

/*
 * Open an existing database read-only (for reporting tools running beside
 * a live stage; WAL lets them read while it writes).  Checks that
 * user_version is 1..maxversion; a database of an older version (whose
 * stage has not run since an upgrade) is migrated first, and the handle
 * is then read-write.  Returns NULL with a message in err.
 */
sqlite3 *db_open_ro(const char *path, const char *const *migrations,
    int maxversion, char *err, size_t errlen);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK: 0, or -1 (see sqlite3_errmsg). */
int db_begin(sqlite3 *db);
int db_commit(sqlite3 *db);
int db_rollback(sqlite3 *db);

/* Prepare sql into *st: 0, or -1 (see sqlite3_errmsg). */
int db_prepare(sqlite3 *db, sqlite3_stmt **st, const char *sql);

/* Finalize every statement still prepared on db, then close it.
 * NULL is allowed. */
void db_close(sqlite3 *db);

#endif
