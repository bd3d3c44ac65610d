//! Several JSON functions over the same text, one pass: a model that flattens a payload calls
//! `json_get_*` a dozen times on one column, and each call alone parses the whole document.
//! [`MergeJsonPaths`] is a logical optimizer rule: in a projection, the calls on the same text
//! expression whose paths can share a walk (none a prefix of another; a path read with several
//! functions is walked once) become fields of one `json_get_many` call, a struct built by a
//! single [`Paths`] walk per row (calls that cannot share it, a path and one under it, go to a
//! second merged call); DataFusion's common-subexpression elimination then computes each merged
//! call once. Each field is what the call it replaces returns, row for row.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StructArray};
use arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, Operator, Projection, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::walk::{Paths, Step};
use super::{Get, JsonGet, find_all, step};

/// The logical optimizer rule: see the module documentation.
#[derive(Debug, Default)]
pub struct MergeJsonPaths;

impl OptimizerRule for MergeJsonPaths {
    fn name(&self) -> &str {
        "merge_json_paths"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Projection(projection) = plan else {
            return Ok(Transformed::no(plan));
        };
        let merged = merge(&projection.expr)?;
        if merged.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Projection(projection)));
        }
        let names = NamePreserver::new_for_projection();
        let exprs = projection
            .expr
            .into_iter()
            .map(|e| {
                let saved = names.save(&e);
                let e = e.transform_up(|x| {
                    let call = json_call(&x);
                    Ok(match call.and_then(|c| merged.iter().find_map(|m| m.field(&c))) {
                        Some(field) => Transformed::yes(field),
                        None => Transformed::no(x),
                    })
                })?;
                Ok(saved.restore(e.data))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Transformed::yes(LogicalPlan::Projection(Projection::try_new(exprs, projection.input)?)))
    }
}

/// A `json_get_*` call with literal path steps: its text argument, function and path.
#[derive(Clone, PartialEq)]
struct Call {
    text: Expr,
    get: Get,
    path: Vec<Step>,
}

fn json_call(expr: &Expr) -> Option<Call> {
    let Expr::ScalarFunction(f) = expr else { return None };
    let get = f.func.inner().as_any().downcast_ref::<JsonGet>()?.get;
    let (text, steps) = f.args.split_first()?;
    let path = steps
        .iter()
        .map(|s| match s {
            Expr::Literal(v, _) => step(v),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Call { text: text.clone(), get, path })
}

/// Calls of one text expression merged into one `json_get_many` call.
struct Merged {
    calls: Vec<Call>,
    many: Expr,
}

impl Merged {
    /// The field of the merged call that `call` becomes, if it was merged.
    fn field(&self, call: &Call) -> Option<Expr> {
        let i = self.calls.iter().position(|c| c == call)?;
        let field = ManyField { index: i, data_type: call.get.data_type(), name: format!("json_many_field_{i}"), signature: Signature::any(1, Volatility::Immutable) };
        Some(Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::new_from_impl(field)),
            vec![self.many.clone()],
        )))
    }
}

/// For each text expression that two or more distinct calls in `exprs` read, the calls merged
/// into as few walks as their paths allow.
fn merge(exprs: &[Expr]) -> Result<Vec<Merged>> {
    let mut calls: Vec<Call> = Vec::new();
    for e in exprs {
        e.apply(|x| {
            // Calls a CASE branch or the right side of AND/OR may not evaluate: merged, each
            // would walk the text for every path where it walked for one (DataFusion computes
            // only expressions evaluated on every row once).
            let conditional = match x {
                Expr::Case(_) => true,
                Expr::BinaryExpr(b) => matches!(b.op, Operator::And | Operator::Or),
                _ => false,
            };
            if conditional {
                return Ok(TreeNodeRecursion::Jump);
            }
            if let Some(call) = json_call(x)
                && !calls.contains(&call)
            {
                calls.push(call);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    let mut texts: Vec<&Expr> = Vec::new();
    for c in &calls {
        if !texts.contains(&&c.text) {
            texts.push(&c.text);
        }
    }
    let mut merged = Vec::new();
    for text in texts {
        // Groups of calls that share a walk, each call in the first it fits.
        let mut groups: Vec<Vec<Call>> = Vec::new();
        for call in calls.iter().filter(|c| &c.text == text) {
            let fits = |group: &Vec<Call>| {
                group.iter().all(|c| {
                    let shared = c.path == call.path && (c.get == Get::Length) == (call.get == Get::Length);
                    shared || !(c.path.starts_with(&call.path) || call.path.starts_with(&c.path))
                })
            };
            match groups.iter_mut().find(|g| fits(g)) {
                Some(group) => group.push(call.clone()),
                None => groups.push(vec![call.clone()]),
            }
        }
        merged.extend(groups.into_iter().filter(|g| g.len() > 1).map(|chosen| {
            let udf = JsonGetMany::new(chosen.iter().map(|c| (c.get, c.path.clone())).collect());
            let many = Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(udf)),
                vec![text.clone()],
            ));
            Merged { calls: chosen, many }
        }));
    }
    Ok(merged)
}

/// `json_get_many(text)`: a struct of fields `f0`, `f1`, ..., field `i` what `calls[i]`'s
/// function returns at its path; all paths followed in one walk per row.
#[derive(Debug)]
struct JsonGetMany {
    calls: Vec<(Get, Vec<Step>)>,
    /// `json_get_many_<hash of calls>`: merged calls over other paths are other expressions.
    name: String,
    /// The distinct paths, walked together.
    paths: Paths,
    /// Per call: its function and its path's slot in `paths`.
    columns: Vec<(Get, usize)>,
    /// The struct's fields, `f<i>` for call `i`.
    fields: Fields,
    signature: Signature,
}

impl JsonGetMany {
    /// `calls`' paths: none a prefix of another, a repeated path read for a value or counted
    /// alike (as [`merge`] chooses them).
    fn new(calls: Vec<(Get, Vec<Step>)>) -> Self {
        let mut distinct: Vec<(&[Step], bool)> = Vec::new();
        let mut columns = Vec::new();
        for (get, path) in &calls {
            let key = (path.as_slice(), *get == Get::Length);
            let slot = distinct.iter().position(|d| *d == key).unwrap_or_else(|| {
                distinct.push(key);
                distinct.len() - 1
            });
            columns.push((*get, slot));
        }
        let paths = Paths::new(distinct).expect("merge chooses paths none of which is a prefix of another");
        let mut hasher = std::hash::DefaultHasher::new();
        calls.hash(&mut hasher);
        let name = format!("json_get_many_{:08x}", hasher.finish() as u32);
        let fields = (calls.iter().enumerate())
            .map(|(i, (get, _))| Field::new(format!("f{i}"), get.data_type(), true))
            .collect();
        Self { calls, name, paths, columns, fields, signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl PartialEq for JsonGetMany {
    fn eq(&self, other: &Self) -> bool {
        self.calls == other.calls
    }
}

impl Eq for JsonGetMany {}

impl Hash for JsonGetMany {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.calls.hash(state);
    }
}

impl ScalarUDFImpl for JsonGetMany {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(self.fields.clone()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let columns: Vec<ArrayRef> = find_all(&args.args[0], args.number_rows, &self.paths, &self.columns)?;
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(self.fields.clone(), columns, None)?)))
    }
}

/// `json_many_field_<i>(many)`: field `i` of a `json_get_many` struct. Not DataFusion's
/// `get_field`, which its optimizer moves toward the scan, each copy with the whole
/// `json_get_many` call under it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ManyField {
    index: usize,
    data_type: DataType,
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for ManyField {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.data_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let many = args.args[0].clone().into_array(args.number_rows)?;
        let many = many.as_any().downcast_ref::<StructArray>().expect("json_get_many gives a struct");
        Ok(ColumnarValue::Array(Arc::clone(many.column(self.index))))
    }
}
