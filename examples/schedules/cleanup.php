<?php
// Deletes files older than N days from a folder (the nightly cron job).
[$dir, $days] = [$argv[1] ?? 'exports', (int)($argv[2] ?? 7)];
$limit = time() - $days * 86400;
$deleted = 0;
foreach (glob("$dir/*") ?: [] as $path) {
    if (is_file($path) && filemtime($path) < $limit) {
        unlink($path);
        $deleted++;
    }
}
echo "deleted $deleted file(s) older than $days day(s) from $dir\n";
