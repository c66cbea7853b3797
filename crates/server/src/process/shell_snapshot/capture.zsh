# Run as `zsh -lc` after the login startup files: also read .zshrc as an interactive shell
# would, then print the shell's state between NUL-delimited markers.
if [[ -r ${ZDOTDIR:-$HOME}/.zshrc ]]; then . "${ZDOTDIR:-$HOME}/.zshrc" </dev/null; fi
builtin printf '\0%s\0' REXEC_SNAPSHOT_STATE
builtin typeset -f
builtin alias -L
builtin setopt | while IFS= builtin read -r __rexec_option; do
    case $__rexec_option in
        login | interactive | shinstdin | privileged | rcs | monitor | zle) ;;
        *) builtin print -r -- "builtin setopt $__rexec_option" ;;
    esac
done
builtin printf '\0%s\0' REXEC_SNAPSHOT_ENV
command env -0
builtin printf '\0%s\0' REXEC_SNAPSHOT_END
