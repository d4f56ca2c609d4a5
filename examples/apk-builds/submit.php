<?php
// Submits an APK build and follows it until it has finished: php submit.php PACKAGE
// Prints each state (and the build's latest line) as it changes, polling every half second.
// Exit code: 0 when the build succeeded, 1 when it failed or was cancelled, 2 on a usage or
// API error.
require __DIR__ . '/stoker_api.php';

if ($argc !== 2) {
    fwrite(STDERR, "usage: php submit.php PACKAGE   (e.g. com.example.shop)\n");
    exit(2);
}
$package = $argv[1];

try {
    [$status, $job] = submit_build($package);
    $id = $job['id'];
    echo $status === 201
        ? "job $id: build of $package submitted\n"
        : "job $id: a build of $package is already {$job['state']}; following it\n";
    $seen = '';
    while (true) {
        $lines = array_values(array_filter(explode("\n", (string)$job['output'])));
        $line = $job['state'] === 'running' && $lines ? '  ' . end($lines) : '';
        if ("{$job['state']}$line" !== $seen) {
            echo "job $id: {$job['state']}$line\n";
            $seen = "{$job['state']}$line";
        }
        if (job_finished($job)) {
            break;
        }
        usleep(500000);
        [, $job] = stoker_request('GET', "/api/v1/jobs/$id");
    }
} catch (StokerError $e) {
    fwrite(STDERR, "submit.php: {$e->getMessage()}\n");
    exit(2);
}

if ($job['state'] !== 'succeeded') {
    fwrite(STDERR, "job $id: {$job['error']}\n" . $job['output']);
    exit(1);
}
echo $job['output'];
exit(0);
