# Run as `bash -lc` after the login startup files: also read ~/.bashrc as an interactive
# shell would, then print the shell's state between NUL-delimited markers. Builtins are
# called through `builtin`, so functions the startup files defined cannot stand in.
if [ -r "$HOME/.bashrc" ]; then . "$HOME/.bashrc" </dev/null; fi
builtin printf '\0%s\0' REXEC_SNAPSHOT_STATE
builtin declare -f
builtin alias -p
builtin set +o
builtin shopt -p | while IFS= builtin read -r __rexec_line; do
    case $__rexec_line in
        *' login_shell' | *' restricted_shell') ;;
        *) builtin printf '%s\n' "$__rexec_line" ;;
    esac
done
builtin printf '\0%s\0' REXEC_SNAPSHOT_ENV
builtin compgen -e | while IFS= builtin read -r __rexec_name; do
    builtin printf '%s=%s\0' "$__rexec_name" "${!__rexec_name-}"
done
builtin printf '\0%s\0' REXEC_SNAPSHOT_END
