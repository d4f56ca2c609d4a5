<?php
// One of ClientTest::testConcurrentProcessesLoseNothing's processes:
//   php enqueue_worker.php TARGET RUN P COUNT
// enqueues COUNT `tally` jobs (params run=RUN, n="P.I") on one Client, prints their ids (JSON).

declare(strict_types=1);

require __DIR__ . '/../autoload.php';

[, $target, $run, $p, $count] = $argv;
$client = new \Stoker\Client($target);
$ids = [];
for ($i = 0; $i < (int)$count; $i++) {
    $ids[] = $client->enqueue('tally', ['run' => $run, 'n' => "$p.$i"])['id'];
}
echo json_encode($ids);
