<?php
// Submits an APK build and follows it until it has finished: php submit.php PACKAGE
// Prints each state (and the build's latest line) as it changes: each wait() returns when the
// build has finished, or after half a second with the build as it stands.
// Exit code: 0 when the build succeeded, 1 when it failed or was cancelled, 2 on a usage or
// API error.
require __DIR__ . '/builds.php';

use Stoker\Job;
use Stoker\StokerException;

if ($argc !== 2) {
    fwrite(STDERR, "usage: php submit.php PACKAGE   (e.g. com.example.shop)\n");
    exit(2);
}
$package = $argv[1];

try {
    $stoker = stoker();
    $job = submit_build($stoker, $package, $created);
    $id = $job['id'];
    echo $created
        ? "job $id: build of $package submitted\n"
        : "job $id: a build of $package is already {$job['state']}; following it\n";
    $seen = '';
    while (true) {
        $lines = array_values(array_filter(explode("\n", (string)$job['output'])));
        $line = $job['state'] === Job::RUNNING && $lines ? '  ' . end($lines) : '';
        if ("{$job['state']}$line" !== $seen) {
            echo "job $id: {$job['state']}$line\n";
            $seen = "{$job['state']}$line";
        }
        if (Job::isFinished($job)) {
            break;
        }
        $job = $stoker->wait($id, 0.5);
    }
} catch (StokerException $e) {
    fwrite(STDERR, "submit.php: {$e->getMessage()}\n");
    exit(2);
}

if (!Job::succeeded($job)) {
    fwrite(STDERR, "job $id: {$job['error']}\n" . $job['output']);
    exit(1);
}
echo $job['output'];
exit(0);
