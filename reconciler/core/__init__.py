"""Core: the values and the rules, from YAML bytes to what may run now.

Loading, validation, the landing judge, sign-offs and the run decisions. Nothing
here starts a process, reads Git or the state store, or asks the clock: the app
layer hands the core what it read, and the time, and gets frozen values back
(`docs/design.md` says what each rule is).
"""
