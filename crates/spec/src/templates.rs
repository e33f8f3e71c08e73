//! Checks the templated fields of a spec against the variables their context provides.
//! (Wired to flotilla-template once that crate's check API lands.)

pub(crate) enum TemplateContext {
    Step,
    Changeset,
}

pub(crate) struct TemplateProblem {
    pub message: String,
    pub offset: Option<usize>,
    pub width: usize,
}

pub(crate) fn check(_text: &str, _context: TemplateContext) -> Result<(), TemplateProblem> {
    Ok(())
}
