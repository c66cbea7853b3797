# Run as `sh -lc` after the login startup files: also read $ENV as an interactive shell
# would (the path as given, without expansion), then print the shell's state between
# NUL-delimited markers. POSIX sh cannot list functions, so only aliases and options.
if [ -n "${ENV-}" ] && [ -r "$ENV" ]; then . "$ENV" </dev/null; fi
printf '\0%s\0' REXEC_SNAPSHOT_STATE
alias | while IFS= read -r __rexec_alias; do
    case $__rexec_alias in
        'alias '*) printf '%s\n' "$__rexec_alias" ;;
        *) printf 'alias %s\n' "$__rexec_alias" ;;
    esac
done
set +o
printf '\0%s\0' REXEC_SNAPSHOT_ENV
command env -0
printf '\0%s\0' REXEC_SNAPSHOT_END
