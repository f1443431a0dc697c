# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_berth_global_optspecs
    string join \n h/help V/version
end

function __fish_berth_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_berth_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_berth_using_subcommand
    set -l cmd (__fish_berth_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c berth -n "__fish_berth_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c berth -n "__fish_berth_needs_command" -s V -l version -d 'Print version'
complete -c berth -n "__fish_berth_needs_command" -f -a "run" -d 'Run the daemon: claim an id, attach and route its ENI, attach and mount its volume, start Kafka, stay healthy'
complete -c berth -n "__fish_berth_needs_command" -f -a "check-config" -d 'Validate the configuration and print each effective value with its source; exit 78 naming the key when it is bad or missing'
complete -c berth -n "__fish_berth_needs_command" -f -a "status" -d 'Show the running daemon\'s state (reads its /state endpoint)'
complete -c berth -n "__fish_berth_needs_command" -f -a "drain" -d 'Drain the running daemon: stop Kafka, unmount, remove routes, detach, release the claim; waits for it'
complete -c berth -n "__fish_berth_needs_command" -f -a "plan" -d 'Show what `berth run` would do on this host (identity, ids, claim, route, mount, overlay); changes nothing'
complete -c berth -n "__fish_berth_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c berth -n "__fish_berth_using_subcommand run" -s c -l config -d 'Configuration file' -r -F
complete -c berth -n "__fish_berth_using_subcommand run" -l env-file -d 'Environment file of BERTH_<SECTION>__<KEY>=value overrides [default: /etc/berth/environment, when present]. A file named here must exist' -r -F
complete -c berth -n "__fish_berth_using_subcommand run" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand check-config" -s c -l config -d 'Configuration file' -r -F
complete -c berth -n "__fish_berth_using_subcommand check-config" -l env-file -d 'Environment file of BERTH_<SECTION>__<KEY>=value overrides [default: /etc/berth/environment, when present]. A file named here must exist' -r -F
complete -c berth -n "__fish_berth_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand status" -l address -d 'The daemon\'s /state endpoint (default: the configuration\'s health.state_listen, on loopback)' -r
complete -c berth -n "__fish_berth_using_subcommand status" -s c -l config -d 'Configuration file' -r -F
complete -c berth -n "__fish_berth_using_subcommand status" -l env-file -d 'Environment file of BERTH_<SECTION>__<KEY>=value overrides [default: /etc/berth/environment, when present]. A file named here must exist' -r -F
complete -c berth -n "__fish_berth_using_subcommand status" -l json -d 'Print the raw JSON'
complete -c berth -n "__fish_berth_using_subcommand status" -s w -l watch -d 'Follow the daemon live: print a line whenever its state or what it waits for changes, until interrupted'
complete -c berth -n "__fish_berth_using_subcommand status" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand drain" -l address -d 'The daemon\'s /state endpoint (default: the configuration\'s health.state_listen, on loopback)' -r
complete -c berth -n "__fish_berth_using_subcommand drain" -s c -l config -d 'Configuration file' -r -F
complete -c berth -n "__fish_berth_using_subcommand drain" -l env-file -d 'Environment file of BERTH_<SECTION>__<KEY>=value overrides [default: /etc/berth/environment, when present]. A file named here must exist' -r -F
complete -c berth -n "__fish_berth_using_subcommand drain" -l timeout -d 'How long to wait for the drain to finish' -r
complete -c berth -n "__fish_berth_using_subcommand drain" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand plan" -s c -l config -d 'Configuration file' -r -F
complete -c berth -n "__fish_berth_using_subcommand plan" -l env-file -d 'Environment file of BERTH_<SECTION>__<KEY>=value overrides [default: /etc/berth/environment, when present]. A file named here must exist' -r -F
complete -c berth -n "__fish_berth_using_subcommand plan" -l json -d 'Print JSON instead of text'
complete -c berth -n "__fish_berth_using_subcommand plan" -l no-zookeeper -d 'Do not read the claims from ZooKeeper (the plan then assumes no id is claimed)'
complete -c berth -n "__fish_berth_using_subcommand plan" -s h -l help -d 'Print help'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run check-config status drain plan help" -f -a "run" -d 'Run the daemon: claim an id, attach and route its ENI, attach and mount its volume, start Kafka, stay healthy'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run check-config status drain plan help" -f -a "check-config" -d 'Validate the configuration and print each effective value with its source; exit 78 naming the key when it is bad or missing'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run check-config status drain plan help" -f -a "status" -d 'Show the running daemon\'s state (reads its /state endpoint)'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run check-config status drain plan help" -f -a "drain" -d 'Drain the running daemon: stop Kafka, unmount, remove routes, detach, release the claim; waits for it'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run check-config status drain plan help" -f -a "plan" -d 'Show what `berth run` would do on this host (identity, ids, claim, route, mount, overlay); changes nothing'
complete -c berth -n "__fish_berth_using_subcommand help; and not __fish_seen_subcommand_from run check-config status drain plan help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
