<?php
// Queues a mail from PHP, as the shop's web app does: php enqueue.php TO SUBJECT [BODY] [--wait]
//
// It uses stoker's PHP client (clients/php of this repository; with Composer, `composer
// require stoker/client` through a path repository, see docs/php.md) and talks to the daemon of
// the stoker.toml beside this file over its unix socket. A web request would only enqueue and
// answer at once; --wait follows the mail until it is sent or has failed for good, to show what
// came of it.
// Exit code: 0 queued (or, with --wait, sent), 1 the mail failed after its attempts, 2 a usage
// or API error (a parameter stoker.toml refuses, the daemon not running).

require is_file(__DIR__ . '/vendor/autoload.php')
    ? __DIR__ . '/vendor/autoload.php'
    : __DIR__ . '/../../clients/php/autoload.php';

use Stoker\Client;
use Stoker\Job;
use Stoker\StokerException;

$args = array_slice($argv, 1);
$wait = in_array('--wait', $args, true);
$args = array_values(array_filter($args, fn ($a) => $a !== '--wait'));
if (count($args) < 2 || count($args) > 3) {
    fwrite(STDERR, "usage: php enqueue.php TO SUBJECT [BODY] [--wait]\n");
    exit(2);
}
$params = ['to' => $args[0], 'subject' => $args[1]];
if (isset($args[2])) {
    $params['body'] = $args[2];
}

try {
    $stoker = new Client(__DIR__ . '/stoker.toml');
    $job = $stoker->enqueue('send_mail', $params);
    echo "job {$job['id']}: mail to {$params['to']} queued\n";
    if (!$wait) {
        exit(0);
    }
    while (!Job::isFinished($job)) {
        $job = $stoker->wait($job['id'], 60); // returns once it has finished, or after 60 s
    }
} catch (StokerException $e) {
    // e.g. a recipient beginning with "-": stoker refuses it (422) naming the parameter
    fwrite(STDERR, "enqueue.php: {$e->getMessage()}\n");
    exit(2);
}
if (Job::succeeded($job)) {
    echo "job {$job['id']}: sent after {$job['attempt']} attempt(s)\n";
    exit(0);
}
fwrite(STDERR, "job {$job['id']}: {$job['state']} after {$job['attempt']} attempt(s): {$job['error']}\n");
exit(1);
