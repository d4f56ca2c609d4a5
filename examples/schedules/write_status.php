<?php
// Writes the status file the load balancer reads (the old `while(true){...; sleep(30);}`).
$file = $argv[1] ?? 'status.json';
$status = ['ok' => true, 'at' => date(DATE_ATOM), 'load' => sys_getloadavg()[0]];
file_put_contents("$file.tmp", json_encode($status) . "\n");
rename("$file.tmp", $file);   // readers never see half a file
echo "wrote $file\n";
