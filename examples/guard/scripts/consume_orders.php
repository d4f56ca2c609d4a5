<?php
// A queue consumer that must always run.
fwrite(STDOUT, "consume_orders: started, pid " . getmypid() . "\n");
$n = 0;
while (true) {
    sleep(1);
    $n++;
    if ($n % 30 === 0) {
        fwrite(STDOUT, "consume_orders: handled $n polls\n");
    }
}
